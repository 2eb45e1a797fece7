import numpy as np
import pytest
import torch

from fobtheory.data import EpisodeSampler, dataset_args, load_mnist1d, stroke_images


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield load_mnist1d(num_samples=600)


def test_data_equals_the_generator_output_and_leaves_global_random_state_alone(small):
    from mnist1d.data import get_dataset_args, make_dataset

    state = np.random.get_state()[1].copy()
    again = load_mnist1d(num_samples=600, cache=False)
    assert np.array_equal(np.random.get_state()[1], state)
    args = get_dataset_args()
    args.num_samples = 600
    ref = make_dataset(args)
    for key in ("x", "x_test"):
        np.testing.assert_array_equal(small[key], ref[key].astype(np.float32))
        np.testing.assert_array_equal(again[key], small[key])
    for key in ("y", "y_test"):
        np.testing.assert_array_equal(small[key], ref[key])
    assert small["x"].shape == (480, 40) and small["x_test"].shape == (120, 40)


def test_cache_is_keyed_by_the_arguments(tmp_path, monkeypatch):
    from fobtheory.data import cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = load_mnist1d(num_samples=100)
    other = load_mnist1d(num_samples=100, seed=3)
    assert not np.array_equal(other["x"], first["x"])
    assert len(list(cache_dir().glob("mnist1d-*.npz"))) == 2
    np.testing.assert_array_equal(load_mnist1d(num_samples=100)["x"], first["x"])  # from the cache
    with pytest.raises(ValueError, match="unknown mnist1d argument"):
        dataset_args(n_samples=10)


def test_episodes_have_the_right_shapes_labels_and_no_overlap(small):
    sampler = EpisodeSampler(small["x"], small["y"], ways=5, shots=3, queries=4, seed=1)
    seen_classes = set()
    for _ in range(20):
        ep = sampler.sample()
        (xs, ys), (xq, yq) = ep.support, ep.query
        assert xs.shape == (15, 1, 40) and xq.shape == (20, 1, 40) and xs.dtype == torch.float32
        assert sorted(ys.tolist()) == sorted(list(range(5)) * 3) and sorted(yq.tolist()) == sorted(list(range(5)) * 4)
        assert len(set(ep.classes)) == 5
        for label, cls in enumerate(ep.classes):  # relabelled examples come from their class
            rows = torch.cat([xs[ys == label], xq[yq == label]]).squeeze(1).numpy()
            idx = [int(np.flatnonzero((small["x"] == r).all(1))[0]) for r in rows]
            assert (small["y"][idx] == cls).all() and len(set(idx)) == len(idx)  # no support/query overlap
        seen_classes.add(ep.classes)
    assert len(seen_classes) > 10  # random classes and label permutations


def test_sampler_is_seeded_and_can_hold_out_classes(small):
    a = EpisodeSampler(small["x"], small["y"], seed=5).sample()
    b = EpisodeSampler(small["x"], small["y"], seed=5).sample()
    assert torch.equal(a.support[0], b.support[0]) and a.classes == b.classes
    held = EpisodeSampler(small["x"], small["y"], classes=range(5), shots=1, seed=0)
    assert all(set(held.sample().classes) == set(range(5)) for _ in range(5))
    with pytest.raises(ValueError, match="ways=5 needs at least 5 classes"):
        EpisodeSampler(small["x"], small["y"], classes=[0, 1, 2])
    with pytest.raises(ValueError, match="shots must be an integer >= 1"):
        EpisodeSampler(small["x"], small["y"], shots=0)
    with pytest.raises(ValueError, match="exceeds the examples"):
        EpisodeSampler(small["x"], small["y"], shots=40, queries=40)


def test_validation_hold_out_is_disjoint_stratified_and_seeded(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    full = load_mnist1d(num_samples=600)
    split = load_mnist1d(num_samples=600, validation_fraction=0.2, validation_seed=3)
    assert full["x_val"].shape == (0, 40) and full["x"].shape == (480, 40)  # fraction 0: the generator's split
    # the two parts partition the train split: every row once, in one of them (brute force over rows)
    rows = lambda x: sorted(map(bytes, x))  # noqa: E731
    assert rows(np.concatenate([split["x"], split["x_val"]])) == rows(full["x"])
    assert not set(map(bytes, split["x"])) & set(map(bytes, split["x_val"]))
    for c in range(10):  # each class keeps its share, and labels travel with their signals
        n_c = int((full["y"] == c).sum())
        assert (split["y_val"] == c).sum() == round(0.2 * n_c)
    lookup = {bytes(x): y for x, y in zip(full["x"], full["y"])}
    assert all(lookup[bytes(x)] == y for x, y in zip(split["x_val"], split["y_val"]))
    np.testing.assert_array_equal(split["x_test"], full["x_test"])  # the test split is untouched
    again = load_mnist1d(num_samples=600, validation_fraction=0.2, validation_seed=3, cache=False)
    other = load_mnist1d(num_samples=600, validation_fraction=0.2, validation_seed=4)
    np.testing.assert_array_equal(again["x_val"], split["x_val"])
    assert not np.array_equal(other["x_val"], split["x_val"])
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match=r"validation_fraction must be in \[0, 1\)"):
            load_mnist1d(num_samples=600, validation_fraction=bad)


def test_stroke_images_are_seeded_classes_of_their_own():
    x, y = stroke_images(6, 10, size=20, seed=2)
    assert x.shape == (60, 1, 20, 20) and x.dtype == np.float32 and y.dtype == np.int64
    assert np.array_equal(np.bincount(y), [10] * 6)
    again, _ = stroke_images(6, 10, size=20, seed=2)
    np.testing.assert_array_equal(again, x)
    assert not np.array_equal(stroke_images(6, 10, size=20, seed=3)[0], x)
    # nearest class mean (leave-one-out) recognises most examples: the classes are distinct drawings
    flat = x.reshape(60, -1)
    means = np.stack([flat[y == c].mean(0) for c in range(6)])
    hits = 0
    for i in range(60):
        m = means.copy()
        m[y[i]] = (means[y[i]] * 10 - flat[i]) / 9
        hits += int(np.argmin(((m - flat[i]) ** 2).sum(1)) == y[i])
    assert hits >= 40  # chance: 10 of 60
    colour, _ = stroke_images(3, 2, size=84, channels=3)
    assert colour.shape == (6, 3, 84, 84)
    with pytest.raises(ValueError, match="channels must be an integer >= 1"):
        stroke_images(channels=0)


def test_episodes_of_images_keep_their_shape_and_classes():
    x, y = stroke_images(8, 9, size=16, channels=3, seed=1)
    ep = EpisodeSampler(x, y, ways=4, shots=2, queries=3, seed=0).sample()
    (xs, ys), (xq, yq) = ep.support, ep.query
    assert xs.shape == (8, 3, 16, 16) and xq.shape == (12, 3, 16, 16)
    for label, cls in enumerate(ep.classes):  # every example is an untouched image of its class
        for img in torch.cat([xs[ys == label], xq[yq == label]]).numpy():
            assert y[np.flatnonzero((x == img).all((1, 2, 3)))[0]] == cls
    signals = np.random.default_rng(0).normal(size=(40, 2, 12))  # (n, channels, length) kept as is
    assert EpisodeSampler(signals, np.arange(40) % 5, shots=2, queries=3).sample().support[0].shape == (10, 2, 12)


def test_sampler_names_what_is_wrong_with_its_arrays():
    x, y = stroke_images(5, 4, size=16)
    with pytest.raises(ValueError, match=r"y must hold one integer label per example of x, shape \(20,\)"):
        EpisodeSampler(x, y[:-1])
    with pytest.raises(ValueError, match="y must hold one integer label"):
        EpisodeSampler(x, y.astype(np.float32))
    with pytest.raises(ValueError, match=r"x must be \(n, length\)"):
        EpisodeSampler(np.zeros(20), y)
    with pytest.raises(ValueError, match="ways=6 needs at least 6 classes"):
        EpisodeSampler(x, y, ways=6, shots=1, queries=1)
    with pytest.raises(ValueError, match=r"shots \+ queries = 5 exceeds the examples of classes \{0: 4"):
        EpisodeSampler(x, y, shots=2, queries=3)
