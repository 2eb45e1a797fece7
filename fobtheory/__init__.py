"""fobtheory: numbers and figures that verify the theory of FO-B-MAML.

Modules: ``problems`` (meta-problems with closed forms), ``estimators`` (FO-B-MAML,
FO-MAML, Reptile from gradient oracles), ``stencils`` (finite-difference weights),
``rates`` (empirical convergence orders), ``testing`` (hypothesis strategies),
``results`` (the results-file schema).
"""
__version__ = "0.1.0"
