"""The claims ledger: every claim of every results file, as a terminal table and as Markdown,
and the verdict on each of the paper's claims, computed from the claims that decide it, with
the conditions (scope) under which each deciding claim holds or fails.

A quick run's ledger says so at the top (:data:`BANNER`), does not decide the claims whose
verdict depends on the budget (:data:`BUDGET_BOUND`), and ends beside the committed verdicts
(:func:`comparison`).

``figures/CLAIMS.md``, the README's ``verdicts`` block (one line per paper claim: the one
deciding number that shows its verdict, :func:`headline`, and the tally) and the docs' claims
page (:func:`claims_rst`: every paper claim condition by condition with every cell that decides
it, then every experiment's key numbers and claims) are generated from the results files here,
never typed by hand, so that the verdicts shown are the ones the data gave.
"""
from __future__ import annotations

import re
import textwrap
from pathlib import Path

from .results import VERDICTS, load_results

START, END = "<!-- claims:start -->", "<!-- claims:end -->"
VERDICTS_START, VERDICTS_END = "<!-- verdicts:start -->", "<!-- verdicts:end -->"
UNDECIDED = "not decided at this budget"
IN_PART = "holds in part"
MARK = {"confirmed": "confirmed", "refuted": "**refuted**", "inconclusive": "*inconclusive*",
        UNDECIDED: f"*{UNDECIDED}*", IN_PART: f"**{IN_PART}**"}
GROUP = {"confirmed": "holds", "refuted": "fails", "inconclusive": "undecided", UNDECIDED: UNDECIDED}
BANNER = ("QUICK RUN: this checks the pipeline at small budgets (short trainings, toy widths, few tasks), "
          "not the paper's claims. Claims whose verdict depends on the budget read "
          f"'{UNDECIDED}'; the project's verdicts are those of the full runs committed in figures/.")

# What a quick run cannot decide, in one place. A key is an experiment (all of its claims,
# new ones too, except those in DECIDED_AT_ANY_BUDGET) or one claim id; the value says
# what the small budget limits.
BUDGET_BOUND = {
    "mnist1d": "test accuracy after a few dozen meta-steps, on a few dozen episodes",
    "mnist1d_select": "settings chosen and trained on a few dozen meta-steps",
    "mnist1d_fidelity": "error tails over a handful of tasks, along a short training",
    "memory": "peak and time ratios at toy widths and K, where parameters and data outweigh activations",
    "memory_scale": "frontiers on toy cards of a few MiB at toy widths",
    "order4_rate": "the order-4 stencil is not measured in the quick configuration",
    "fob_stops_at_delta_bias": "stationarity within a short meta-training",
    "fob_below_plateau_sampled": "plateaus of sampled meta-batches within a short meta-training",
    "conv4_fidelity": "error tails over a few tasks of a toy-width Conv4, along a few MAML steps",
    "mnist1d_paired": "paired trajectories of a few dozen meta-steps, one seed",
    **dict.fromkeys(("fob_below_hvp_peak_stored", "fob_below_hvp_peak_lean", "fob_faster_than_hvp_stored",
                     "fob_faster_than_hvp_lean", "fob_faster_than_hvp_at_equal_memory",
                     "maml_hvp_bypasses_activation_bottleneck", "hvp_lean_vs_fob_lean_at_scale"),
                    "peak and time ratios at toy widths and K, where parameters and data outweigh activations"),
    "maml_hvp_trains_like_maml": "a lockstep training of a few meta-steps",
}
DECIDED_AT_ANY_BUDGET = {"meta_peak_equals_cpu_meter", "conv4_meta_peak_equals_cpu_meter"}  # exact at any size

SHARED, TUNED = "shared setting", "each at its own best (alpha, K)"
UNROLLED = "vs unrolled MAML"
HVP = "vs HVP-MAML (exact, by Hessian-vector products)"
PAIRED = "paired seeds in lockstep, vs MAML's noise floor"
SHOT_CELLS = r"^(1-shot: [^;]*; 5-shot: [^;]*)"  # every shot count's interval: each one decides
PAIRED_CELLS = r"^(.*?)(?:; MAML perturbed|$)"  # a paired claim's cells, without the context that follows
PAIRED_WORDS = (("_relu_", "ReLU"), ("_gelu_", "GELU"), ("_relu_", "frozen patterns"), ("_gelu_", "plain differences"),
                ("_shared", SHARED), ("_tuned", TUNED), ("_final", "final test accuracy"),
                ("_early", "early-stopped test accuracy"))

# The paper's claims (its abstract) and the ledger claims that decide each one, as
# (claim id, label, pattern[, scope]): the pattern's group picks the deciding number out of
# that claim's `measured` text (no match: its first clause); the scope names the conditions
# (activation, estimator variant, setting, reference method) under which that claim was
# measured. A paper claim is refuted if one of its deciding claims is, confirmed if all of
# them are, inconclusive otherwise; with scopes it "holds in part" where some hold and some
# fail. Ids that are not in the results do not count, and the summary names them. `related`
# adds, when present, the claims of some experiments whose id matches `id_pattern` (HVP-MAML's,
# the paired study's), scoped by the words of their ids (`words`, default VARIANT_WORDS), their
# numbers picked by `pattern` (default: the first clause). Claim 4a is decided by accuracy
# claims only; the paired study's parameter distances decide 4c, a claim of their own.
PAPER_CLAIMS = (
    {"claim": "1. Convergence",
     "statement": "FO-B-MAML converges to a stationary point; FO-MAML and Reptile keep a bias",
     "deciding": (("fob_below_plateau_full", "final |grad Phi| (SGD, full batch):", r"sgd: ([^;]*)"),
                  ("baselines_irreducible", "error of FO-MAML (logistic, K=1):", r"logistic K=1 fo_maml: ([^;]*)"))},
    {"claim": "2. Bias rates", "statement": "bias O(delta) forward, O(delta^(2/3)) symmetric (read: O(eps^(2/3)))",
     "deciding": (("forward_rate", "forward slope in delta (logistic):", r"logistic forward J=1 K=1: ([^;]*)"),
                  ("eps_rates", "symmetric slope in eps (logistic, 2/3 expected):",
                   r"logistic symmetric: best ([^]]*\])"))},
    {"claim": "3. Smoothness", "statement": "Phi is (L0, L1)-smooth, not L-smooth; normalized methods are favoured",
     "deciding": (("L1_positive_cosine", "cosine task, fitted L1 =", r"L1 = ([^;]*\))"),
                  ("hess_unbounded_cosine", "cosine task, sup |hess Phi| grows", r"grows (\S+)"),
                  ("sngdm_where_sgd_fails", "at lr 10, SGD / SNGDM:", r"10\.0: ([^,;]*)"))},
    {"claim": "4a. Practice, accuracy", "statement": "on MNIST-1D FO-B-MAML tracks MAML's accuracy",
     "deciding": (("fob_tracks_maml_gelu", "FO-B - MAML,", SHOT_CELLS,
                   ("GELU", "plain differences", SHARED, UNROLLED)),
                  ("best_fob_tracks_maml_gelu", "FO-B - MAML,", SHOT_CELLS,
                   ("GELU", "plain differences", TUNED, UNROLLED)),
                  ("fob_frozen_tracks_maml_relu", "FO-B - MAML,", SHOT_CELLS,
                   ("ReLU", "frozen patterns", SHARED, UNROLLED)),
                  ("best_fob_frozen_tracks_maml_relu", "FO-B - MAML,", SHOT_CELLS,
                   ("ReLU", "frozen patterns", TUNED, UNROLLED)),
                  ("fob_tracks_maml_relu", "FO-B - MAML,", SHOT_CELLS,
                   ("ReLU", "plain differences", SHARED, UNROLLED)),
                  ("best_fob_tracks_maml_relu", "FO-B - MAML,", SHOT_CELLS,
                   ("ReLU", "plain differences", TUNED, UNROLLED))),
     "related": {"experiments": ("mnist1d_paired",), "id_pattern": r"^fob_(accuracy_within|tracks_maml_paired)_",
                 "scope": PAIRED, "pattern": PAIRED_CELLS, "words": PAIRED_WORDS}},
    {"claim": "4b. Practice, memory",
     "statement": "FO-B-MAML keeps a flat memory footprint, without MAML's activation bottleneck",
     "deciding": (("fob_memory_flat_in_K_lean", "peak at the largest K / at K=1:", r"worst ([^ ;]*)",
                   ("FO-B lean (iterates recomputed)",)),
                  ("fob_memory_flat_in_K_store", "peak at the largest K / at K=1:", r"worst ([^ ;]*)",
                   ("FO-B with stored iterates",)),
                  ("maml_memory_grows", "its peak at the largest K / at K=1:", r"least growth ([^ ;]*)",
                   ("the bottleneck itself: unrolled MAML",)),
                  ("fob_symmetric_fits_where_maml_does_not_80GB", "80 GB card, K 50:", r"K 50: ([^;]*)",
                   ("FO-B with stored iterates", UNROLLED)),
                  ("fob_symmetric_lean_fits_where_maml_does_not_80GB", "80 GB card, K 50:", r"K 50: ([^;]*)",
                   ("FO-B lean (iterates recomputed)", UNROLLED)),
                  ("fob_below_hvp_peak_stored", "peak FO-B / HVP-MAML:", r"^([^ ;]*)",
                   ("FO-B with stored iterates", HVP)),
                  ("fob_below_hvp_peak_lean", "peak FO-B / HVP-MAML:", r"^([^ ;]*)",
                   ("FO-B lean (iterates recomputed)", HVP)),
                  ("hvp_lean_vs_fob_lean_at_scale", "shape-only peaks:", r"^([^,]*, [^,]*)",
                   ("FO-B lean (iterates recomputed)", HVP, "at scale")),
                  ("fob_faster_than_hvp_at_equal_memory", "the faster at each memory budget:", r"^([^;]*)",
                   ("FO-B, the fastest storage that fits", HVP))),
     "related": {"experiments": ("memory", "memory_scale"), "id_pattern": "hvp", "scope": HVP}},
    {"claim": "4c. Practice, trajectory distance",
     "statement": "trained in lockstep, FO-B-MAML's parameters stay within 2x MAML's noise floor's distance to MAML's",
     "deciding": (),
     "related": {"experiments": ("mnist1d_paired",), "id_pattern": r"^fob_distance_within_noise_floor_",
                 "scope": PAIRED, "pattern": PAIRED_CELLS, "words": PAIRED_WORDS}},
)
# the estimator variant of a related claim, from words of its id (every word found adds its condition)
VARIANT_WORDS = (("checkpoint", "FO-B with checkpointed iterates"), ("lean", "FO-B lean (iterates recomputed)"),
                 ("stor", "FO-B with stored iterates"))


def budget_bound(experiment: str, claim_id: str) -> str | None:
    """Why a quick run cannot decide this claim (:data:`BUDGET_BOUND`), or None."""
    if claim_id in DECIDED_AT_ANY_BUDGET:
        return None
    return BUDGET_BOUND.get(claim_id) or BUDGET_BOUND.get(experiment)


def collect(folder) -> list[dict]:
    """Claims of every ``*.json`` results file in ``folder`` (validated), each with the
    experiment, its results file, figures and the summary's ``highlights`` (key numbers,
    as sentences generated by the experiment). A file written by a quick run (its summary's
    ``quick``) marks each claim ``quick``; a budget-bound one (:func:`budget_bound`) gets
    the verdict :data:`UNDECIDED` and the reason in ``budget``."""
    folder = Path(folder)
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise ValueError(f"no results files (*.json) in {folder}: run `fobtheory reproduce` first")
    rows = []
    for path in paths:
        results = load_results(path)
        longer = [q.stem for q in paths if q.stem.startswith(path.stem) and q != path]  # mnist1d_fidelity's own
        figures = sorted(p.name for p in folder.glob(f"{path.stem}*.png") if not any(p.stem.startswith(s) for s in longer))
        highlights = results["summary"].get("highlights", [])
        quick = bool(results["summary"].get("quick", False))
        for c in results["claims"]:
            row = dict(c, experiment=results["experiment"], results=path.name, figures=figures,
                       highlights=highlights, quick=quick)
            reason = budget_bound(row["experiment"], row["id"]) if quick else None
            if reason:
                row.update(verdict=UNDECIDED, budget=reason)
            rows.append(row)
    return rows


def _excerpt(measured: str, pattern: str) -> str:
    match = re.search(pattern, measured)
    return match.group(1) if match else measured.split(";")[0]


def _deciding(paper: dict, rows: list[dict]) -> list[tuple]:
    """The paper claim's deciding claims as (id, label, pattern, scope), with its related
    claims present in ``rows``."""
    out = [(i, label, pattern, tuple(scope[0]) if scope else ()) for i, label, pattern, *scope in paper["deciding"]]
    related = paper.get("related")
    if related:
        listed = {d[0] for d in out}
        for r in rows:
            if (r["experiment"] in related["experiments"] and re.search(related["id_pattern"], r["id"])
                    and r["id"] not in listed):
                words = tuple(dict.fromkeys(name for word, name in related.get("words", VARIANT_WORDS)
                                            if word in r["id"]))
                label = "" if "pattern" in related else f"{r['statement']}:"
                out.append((r["id"], label, related.get("pattern", r"^([^;]*)"), (*words, related["scope"])))
    return out


def _paper_verdict(verdicts: list[str], scoped: bool) -> str:
    decided = [v for v in verdicts if v != UNDECIDED]
    if verdicts and not decided:
        return UNDECIDED
    if scoped and "confirmed" in decided and "refuted" in decided:
        return IN_PART
    if "refuted" in decided:
        return "refuted"
    return "confirmed" if decided and set(decided) == {"confirmed"} else "inconclusive"


def paper_verdicts(rows: list[dict]) -> list[dict]:
    """Each of :data:`PAPER_CLAIMS` with its verdict, the deciding numbers of its deciding
    claims present in ``rows`` (``id``, ``verdict``, ``text``, ``scope``) and the ``missing``
    ids. Claims a quick run cannot decide (:data:`UNDECIDED`) do not count; if no other
    decides, neither does the paper claim."""
    by_id = {r["id"]: r for r in rows}
    out = []
    for paper in PAPER_CLAIMS:
        deciding = _deciding(paper, rows)
        numbers = [{"id": i, "verdict": by_id[i]["verdict"], "scope": scope,
                    "text": f"{label} {_excerpt(by_id[i]['measured'], pattern)}".strip()}
                   for i, label, pattern, scope in deciding if i in by_id]
        scoped = any(n["scope"] for n in numbers)
        common = [c for c in (numbers[0]["scope"] if len(numbers) > 1 else ()) if all(c in n["scope"] for n in numbers)]
        for n in numbers:
            n["scope"] = tuple(c for c in n["scope"] if c not in common)
        out.append(dict(paper, verdict=_paper_verdict([n["verdict"] for n in numbers], scoped), numbers=numbers,
                        scoped=scoped, common=common, missing=[d[0] for d in deciding if d[0] not in by_id]))
    return out


def scope_lines(paper: dict) -> list[str]:
    """A scoped paper verdict's deciding numbers grouped by verdict, one line per group
    (``holds for <conditions> (<numbers>, `id`); ...``), then the conditions they share."""
    lines = []
    for verdict, word in GROUP.items():
        items = [f"{', '.join(n['scope']) or 'all'} ({n['text']}, `{n['id']}`)"
                 for n in paper["numbers"] if n["verdict"] == verdict]
        if items:
            lines.append(f"{word} for " + "; ".join(items))
    if paper["common"]:
        lines.append("every number: " + ", ".join(paper["common"]))
    return lines


def headline(paper: dict) -> dict | None:
    """The one deciding number that shows a paper claim's verdict: the first failing one if a
    deciding claim fails, the first undecided one if the claim stays open, else the first."""
    numbers = paper["numbers"]
    want = {"refuted": "refuted", IN_PART: "refuted", "inconclusive": "inconclusive"}.get(paper["verdict"])
    return next((n for n in numbers if n["verdict"] == want), numbers[0] if numbers else None)


def tally(paper: dict) -> str:
    """How many deciding claims (conditions, for a scoped claim) hold, fail and stay undecided."""
    what = "conditions" if paper["scoped"] else "deciding claims"
    counts = [f"{sum(n['verdict'] == v for n in paper['numbers'])} {v}" for v in GROUP
              if any(n["verdict"] == v for n in paper["numbers"])]
    return f"{len(paper['numbers'])} {what}: " + ", ".join(counts) if counts else "no deciding claim measured"


def verdicts_markdown(rows: list[dict], link: str | None = None) -> str:
    """The paper's claims as a short Markdown table, one line each: the verdict, the one
    deciding number that shows it (:func:`headline`, with its conditions) and the tally;
    ``link`` points to the condition-by-condition table."""
    out = ["| paper claim | verdict | the deciding number (its conditions, claim id), and the tally |", "|---|---|---|"]
    for p in paper_verdicts(rows):
        n = headline(p)
        where = f"{GROUP[n['verdict']]} for {', '.join(n['scope'])}: " if n and n["scope"] else ""
        shown = f"{where}{n['text']} (`{n['id']}`)" if n else ""
        cells = [shown, tally(p) + (f" ([all]({link}))" if link else "")]
        if p["missing"]:
            cells.append(f"{len(p['missing'])} not in these results")
        out.append(f"| **{p['claim']}**: {_cell(p['statement'])} | {MARK[p['verdict']]} | "
                   f"{_cell('; '.join(c for c in cells if c))} |")
    return "\n".join(out)


def conditions_markdown(rows: list[dict]) -> str:
    """Each paper claim's deciding claims, one row per condition: verdict, every deciding
    cell, the claim id (the full table behind :func:`verdicts_markdown`)."""
    out = []
    for p in paper_verdicts(rows):
        out += [f"### {p['claim']}: {MARK[p['verdict']]}", "", p["statement"] + ".", ""]
        if p["common"]:
            out += ["Every row: " + ", ".join(p["common"]) + ".", ""]
        out += ["| conditions | verdict | deciding numbers | claim |", "|---|---|---|---|"]
        out += [f"| {_cell(', '.join(n['scope']) or '-')} | {MARK[n['verdict']]} | {_cell(n['text'])} | `{n['id']}` |"
                for n in p["numbers"]]
        if p["missing"]:
            out += ["", "Not in these results, not counted: " + ", ".join(f"`{i}`" for i in p["missing"])]
        out.append("")
    return "\n".join(out).rstrip()


def _counts(rows: list[dict]) -> str:
    counts = {v: sum(r["verdict"] == v for r in rows) for v in (*VERDICTS, UNDECIDED)}
    return f"{len(rows)} claims: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n or v in VERDICTS)


def table(rows: list[dict], width: int = 150) -> str:
    """A plain-text table for the terminal: the paper's claims (a quick run's after the
    banner), then every claim."""
    lines = [BANNER, ""] if any(r["quick"] for r in rows) else []
    for p in paper_verdicts(rows):
        lines.append(f"[{p['verdict']:>12}] paper claim {p['claim']}: {p['statement']}")
        for line in scope_lines(p) if p["scoped"] else []:
            lines += textwrap.wrap(line, width - 16, initial_indent=" " * 16, subsequent_indent=" " * 20)
    lines.append(_counts(rows))
    for r in rows:
        head = f"[{r['verdict']:>12}] {r['experiment']}/{r['id']}"
        lines.append(head)
        for label in ("statement", "expected", "measured", "budget"):
            lines += textwrap.wrap(r.get(label, ""), width - 20, initial_indent=f"{'':16}{label:<10}",
                                   subsequent_indent=" " * 26)
        lines.append(f"{'':16}{'figure':<10}{', '.join(r['figures']) or '-'}")
    return "\n".join(lines)


def comparison(rows: list[dict], committed: list[dict], name: str = "figures/") -> str:
    """Markdown: a quick run's verdicts beside the committed ones (``name``): the paper's
    claims, then every claim, agreeing, differing, or not decided at this budget."""
    ours = {p["claim"]: p["verdict"] for p in paper_verdicts(rows)}
    out = [f"| paper claim | this run | committed ({name}) | |", "|---|---|---|---|"]
    for p in paper_verdicts(committed):
        mine = ours[p["claim"]]
        note = UNDECIDED if mine == UNDECIDED else "agree" if mine == p["verdict"] else "**differ**"
        out.append(f"| {p['claim']} | {mine} | {p['verdict']} | {note} |")
    theirs = {r["id"]: r["verdict"] for r in committed}
    shared = [r for r in rows if r["id"] in theirs]
    differ = [r for r in shared if r["verdict"] not in (UNDECIDED, theirs[r["id"]])]
    undecided = [r for r in shared if r["verdict"] == UNDECIDED]
    out += ["", f"Of {len(shared)} claims in both: {len(shared) - len(differ) - len(undecided)} agree, "
                f"{len(differ)} differ, {len(undecided)} not decided at this budget; "
                f"{len(rows) - len(shared)} only in this run."]
    out += [f"- differs: `{r['id']}`: this run {r['verdict']}, committed {theirs[r['id']]}" for r in differ]
    for reason in dict.fromkeys(r["budget"] for r in undecided):
        ids = ", ".join(f"`{r['id']}` ({theirs[r['id']]})" for r in undecided if r["budget"] == reason)
        out.append(f"- not decided at this budget ({reason}); committed: {ids}")
    return "\n".join(out)


def _budget_note(row: dict) -> str:
    return f" (not decided at this budget: {row['budget']})" if "budget" in row else ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _order(rows: list[dict]) -> list[str]:
    """Experiments in the order `fobtheory reproduce` runs them, unknown ones last."""
    from .experiments import COMMANDS

    known = list(COMMANDS.values())
    names = list(dict.fromkeys(r["experiment"] for r in rows))
    return sorted(names, key=lambda n: known.index(n) if n in known else len(known))


def markdown(rows: list[dict], figure_prefix: str = "") -> str:
    """The ledger in Markdown: a count of verdicts, then per experiment its figure(s) and a
    table of its claims; figure links are prefixed by ``figure_prefix``."""
    from .experiments import TITLES

    out = [_counts(rows) + "."]
    for name in _order(rows):
        own = [r for r in rows if r["experiment"] == name]
        out += ["", f"#### {TITLES.get(name, name)}", ""]
        out += [f"![{f}]({figure_prefix}{f})" for f in own[0]["figures"]]
        if own[0].get("highlights"):
            out += [""] + [f"- {line}" for line in own[0]["highlights"]]
        out += ["", "| verdict | claim | expected | measured |", "|---|---|---|---|"]
        out += [f"| {MARK[r['verdict']]} | {_cell(r['statement'])} (`{r['id']}`) | {_cell(r['expected'])} | "
                f"{_cell(r['measured'] + _budget_note(r))} |" for r in own]
    return "\n".join(out)


def rst_text(text: str) -> str:
    """Plain text as reST: markup characters escaped, so ``|grad Phi|`` is a norm, not a
    substitution."""
    return re.sub(r"([\\*`|_<>])", r"\\\1", " ".join(str(text).split()))


def _rst_title(text: str, char: str) -> list[str]:
    return [text, char * len(text), ""]


def list_table(header: list[str], rows: list[list[str]], widths: str) -> list[str]:
    """A reST list-table's lines (a blank line after it): ``header``, then ``rows``."""
    out = [".. list-table::", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header, *rows]:
        out += [f"   * - {row[0]}"] + [f"     - {c}" for c in row[1:]]
    return out + [""]


def claims_rst(rows: list[dict], figure_prefix: str = "../figures/") -> str:
    """The docs' claims page (reST): each paper claim with its verdict and, condition by
    condition, the verdict and every cell that decides it; then, per experiment, its figures,
    its key numbers (the ``highlights`` its code writes) and every claim."""
    from .experiments import TITLES

    word = {k: v.strip("*") for k, v in MARK.items()}
    out = [".. Generated by `fobtheory claims --docs docs/claims.rst` from figures/*.json: do not edit.", "",
           *_rst_title("Claims and verdicts", "="),
           "Every verdict on this page is computed from the measured numbers of the committed results files "
           "(``figures/*.json``) by ``fobtheory claims``, and this page is regenerated from them, never typed "
           "by hand. A paper claim is refuted if one of its deciding claims is, confirmed if all of them are, "
           "inconclusive otherwise; it *holds in part* where some conditions hold and others fail.", "",
           rst_text(_counts(rows)) + ".", ""]
    out += _rst_title("The paper's claims, condition by condition", "-")
    for p in paper_verdicts(rows):
        out += _rst_title(f"{p['claim']}: {word[p['verdict']]}", "~")
        out += [rst_text(p["statement"]) + ".", ""]
        if p["common"]:
            out += ["Every row: " + rst_text(", ".join(p["common"])) + ".", ""]
        out += list_table(["conditions", "verdict", "deciding numbers", "claim"],
                          [[rst_text(", ".join(n["scope"]) or "(all)"), word[n["verdict"]], rst_text(n["text"]),
                            f"``{n['id']}``"]
                           for n in p["numbers"]], "30 10 45 15")
        if p["missing"]:
            out += ["Not in these results, not counted: " + ", ".join(f"``{i}``" for i in p["missing"]), ""]
    out += _rst_title("Every claim, experiment by experiment", "-")
    for name in _order(rows):
        own = [r for r in rows if r["experiment"] == name]
        out += _rst_title(TITLES.get(name, name), "~")
        for f in own[0]["figures"]:
            out += [f".. image:: {figure_prefix}{f}", f"   :alt: {f}", "   :width: 100%", ""]
        out += [f"- {rst_text(line)}" for line in own[0].get("highlights", [])] + [""] * bool(own[0].get("highlights"))
        out += list_table(["verdict", "claim", "expected", "measured"],
                          [[word[r["verdict"]], f"{rst_text(r['statement'])} (``{r['id']}``)", rst_text(r["expected"]),
                            rst_text(r["measured"] + _budget_note(r))] for r in own], "10 35 20 35")
    return "\n".join(out).rstrip() + "\n"


def claims_file(rows: list[dict], against: str | None = None) -> str:
    """CLAIMS.md: a quick run's banner, the paper's claims, ``against`` (a
    :func:`comparison` with the committed results, or why there is none), every claim."""
    quick = any(r["quick"] for r in rows)
    return ("# Claims ledger\n\n" + (f"**{BANNER}**\n\n" if quick else "")
            + "Generated by `fobtheory claims` from the results files in this folder; "
            "each verdict is computed from the measured numbers.\n\n## The paper's claims\n\n"
            + verdicts_markdown(rows, "#the-papers-claims-condition-by-condition") + "\n\n"
            + "## The paper's claims, condition by condition\n\n" + conditions_markdown(rows) + "\n\n"
            + (f"## Against the committed results\n\n{against}\n\n" if against else "")
            + "## Every claim\n\n" + markdown(rows) + "\n")


def write_ledger(folder, committed="figures", echo=print) -> list[dict]:
    """Collect the claims of ``folder``, write its ``CLAIMS.md`` and print the ledger. A quick
    run's ledger opens with :data:`BANNER` and ends with its :func:`comparison` with the
    results in ``committed`` (or the reason there is none)."""
    rows = collect(folder)
    against = None
    if any(r["quick"] for r in rows) and committed is not None:
        if Path(committed).resolve() == Path(folder).resolve():
            against = f"{committed} is this folder: nothing to compare with."
        else:
            try:
                against = comparison(rows, collect(committed), f"{Path(committed).as_posix()}/")
            except ValueError as err:
                against = f"No comparison with the committed results: {err}"
    Path(folder, "CLAIMS.md").write_text(claims_file(rows, against))
    echo(table(rows))
    if against:
        echo(f"\n{BANNER}\nAgainst the committed results:\n{against}")
    echo(f"wrote {Path(folder, 'CLAIMS.md')}")
    return rows


def _fill(text: str, start: str, end: str, body: str) -> str:
    return re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: f"{start}\n{body}\n{end}", text, flags=re.S)


CLAIMS_PAGE = "docs/claims.rst"  # the docs' claims page, from the repository root


def update_readme(readme, rows: list[dict], figure_prefix: str = "figures/", link: str = CLAIMS_PAGE,
                  folder=None) -> bool:
    """Replace the block between the claims markers of ``readme`` (if any) with the ledger, the
    block between the verdicts markers (if any) with :func:`verdicts_markdown` (its rows link to
    ``link``) and, given the results ``folder``, the front page's other generated blocks
    (:func:`fobtheory.frontpage.blocks`) where their markers are; True if the file changed. A
    README with neither the claims nor the verdicts block is an error."""
    from . import frontpage

    readme = Path(readme)
    text = readme.read_text()
    blocks = [(START, END, lambda: markdown(rows, figure_prefix)),
              (VERDICTS_START, VERDICTS_END, lambda: verdicts_markdown(rows, link))]
    if folder is not None:
        blocks += [(*frontpage.markers(name), lambda body=body: body)
                   for name, body in frontpage.blocks(folder, rows, figure_prefix).items()]
    present = [(a, b, body) for a, b, body in blocks if a in text and b in text]
    if not any(a in (START, VERDICTS_START) for a, _, _ in present):
        raise ValueError(f"{readme} has no {START} or {VERDICTS_START} block to fill")
    new = text
    for a, b, body in present:
        new = _fill(new, a, b, body())
    if new != text:
        readme.write_text(new)
    return new != text


def readme_block(readme, start: str = START, end: str = END) -> str:
    """The current block of ``readme`` between two markers (exclusive); the claims block by
    default."""
    text = Path(readme).read_text()
    match = re.search(re.escape(start) + r"\n(.*?)\n" + re.escape(end), text, flags=re.S)
    if not match:
        raise ValueError(f"{readme} has no {start} ... {end} block")
    return match.group(1)
