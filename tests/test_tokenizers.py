"""Action tokenizers: measured round-trip error, save/load, clipping and typed input errors.

Every registered tokenizer is fitted on smooth random chunks (sums of low-frequency sinusoids plus
a linear trend, squashed into +-3, or into the car bounds for `longlat`) and round-tripped on a
held-out split. The asserted bounds are the ones documented in each tokenizer's docstring; the
measured numbers are printed (run with `-s` to see them).
"""

from __future__ import annotations

import numpy as np
import pytest

from physai.errors import ConfigError
from physai.tokenizers import TOKENIZERS, ActionTokenizer, BinsTokenizer, LongLatTokenizer, load_tokenizer

H, N, N_TRAIN = 16, 400, 320

# name -> constructor kwargs and action dims to test; a new tokenizer must add a case here
CASES: dict[str, dict] = {
    "bins": {"kwargs": {"n_bins": 256}, "dims": (2, 7)},
    "fast": {"kwargs": {"vocab_size": 1024, "scale": 10.0}, "dims": (2, 7)},
    "longlat": {"kwargs": {}, "dims": (2,)},
}
FAST_RMS_REL = 0.02  # measured ~0.010 of the data range (provable: <= 0.25/scale of the 1-99% span)
FAST_TOKENS_FRAC = 0.5  # measured 0.30 (A=2) / 0.26 (A=7) of H*A tokens per chunk


def smooth_chunks(seed: int, n: int, h: int, a: int) -> np.ndarray:
    """[n, h, a] smooth trajectories: 3 random sinusoids (<= 1.5 cycles/chunk) + trend, in (-3, 3)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, h)[None, :, None]  # [1, H, 1]
    x = rng.normal(0, 0.5, (n, 1, a)) + rng.normal(0, 1, (n, 1, a)) * (t - 0.5)  # [N, H, A]
    for k in range(3):
        freq, phase = rng.uniform(0, 1.5, (n, 1, a)), rng.uniform(0, 2 * np.pi, (n, 1, a))
        x = x + rng.normal(0, 1, (n, 1, a)) / (k + 1) * np.sin(2 * np.pi * freq * t + phase)
    return 3.0 * np.tanh(x / 2)


def case_data(name: str, a: int, seed: int = 0) -> np.ndarray:
    x = smooth_chunks(seed, N, H, a)
    if name == "longlat":  # car: accel within +-4.5 m/s^2, steering within +-0.78 rad, dense near 0
        x = np.stack([1.5 * x[..., 0], 0.78 * (x[..., 1] / 3) ** 3], axis=-1)
    return x


def build(name: str) -> ActionTokenizer:
    if name not in CASES:
        pytest.fail(f"tokenizer '{name}' is registered but has no CASES entry in tests/test_tokenizers.py")
    return TOKENIZERS.get(name)(**CASES[name]["kwargs"])


_FITTED: dict[tuple[str, int], tuple[ActionTokenizer, np.ndarray, np.ndarray]] = {}


def fitted(name: str, a: int):
    """(tokenizer fitted on the train split, train [320, H, A], held-out [80, H, A]), cached."""
    if (name, a) not in _FITTED:
        x = case_data(name, a)
        _FITTED[name, a] = (build(name).fit(x[:N_TRAIN]), x[:N_TRAIN], x[N_TRAIN:])
    return _FITTED[name, a]


def n_tokens(tokens) -> np.ndarray:
    return np.array([len(t) for t in tokens])


ROUND_TRIP = [(n, a) for n in TOKENIZERS.names() for a in CASES.get(n, {"dims": (2,)})["dims"]]


@pytest.mark.parametrize("name,a", ROUND_TRIP)
def test_round_trip_error_within_documented_bound(name, a):
    tok, _, x = fitted(name, a)
    tokens = tok.encode(x)
    xhat = tok.decode(tokens)
    assert xhat.shape == x.shape and xhat.dtype == np.float32
    err = np.abs(xhat - x)  # [N, H, A]
    span = x.max(axis=(0, 1)) - x.min(axis=(0, 1))  # [A] held-out data range
    max_rel, rms_rel = float((err / span).max()), float(np.sqrt(((err / span) ** 2).mean()))
    per_chunk = float(n_tokens(tokens).mean())
    print(f"\n{name} A={a}: max_rel={max_rel:.5f} rms_rel={rms_rel:.5f} tokens/chunk={per_chunk:.1f} (H*A={H * a})")

    if name == "bins":
        low, high = np.broadcast_to(tok.low, (a,)), np.broadcast_to(tok.high, (a,))
        outside = np.maximum(0, np.maximum(low - x, x - high))  # held-out may leave the fitted range
        assert (err <= tok.bin_width() / 2 + outside + 1e-6).all()
        inside = outside == 0
        print(f"  bins in fitted range: max err = {(err / (tok.bin_width() / 2))[inside].max():.4f} half-bins")
        assert per_chunk == H * a == tok.fixed_length
    elif name == "fast":
        z_err = (xhat - x) * 2 / (tok.q_high - tok.q_low)  # [N, H, A] error in normalised units
        chunk_rms = np.sqrt((z_err**2).mean(axis=(1, 2)))  # [N]
        assert (chunk_rms <= 0.5 / tok.scale + 1e-5).all()  # orthonormal DCT: rounding <= 0.5/scale
        assert (np.abs(z_err) <= np.sqrt(H) * 0.5 / tok.scale + 1e-5).all()
        assert rms_rel <= FAST_RMS_REL
        assert per_chunk <= FAST_TOKENS_FRAC * H * a  # compression
    elif name == "longlat":
        assert (err[..., 0] <= tok.long_half_width() + 1e-6).all()
        assert (err[..., 1] <= tok.lat_half_width(x[..., 1]) + 1e-6).all()
        assert per_chunk == 2 * H == tok.fixed_length
    else:
        pytest.fail(f"no documented round-trip bound for '{name}'")


@pytest.mark.parametrize("name", TOKENIZERS.names())
def test_token_ids_within_vocab(name):
    tok, train, x = fitted(name, CASES[name]["dims"][0])
    for tokens in (tok.encode(train), tok.encode(x)):
        flat = np.concatenate([np.asarray(t) for t in tokens])
        assert np.issubdtype(flat.dtype, np.integer)
        assert flat.min() >= 0 and flat.max() < tok.vocab_size


@pytest.mark.parametrize("name", TOKENIZERS.names())
def test_save_load_gives_identical_outputs(name, tmp_path):
    tok, _, x = fitted(name, CASES[name]["dims"][-1])
    tok.save(tmp_path)
    back = load_tokenizer(tmp_path)
    assert type(back) is type(tok) and back.vocab_size == tok.vocab_size
    assert back.fixed_length == tok.fixed_length and back.state() == tok.state()
    t1, t2 = tok.encode(x), back.encode(x)
    assert len(t1) == len(t2) and all(np.array_equal(p, q) for p, q in zip(t1, t2))
    np.testing.assert_array_equal(tok.decode(t1), back.decode(t1))


@pytest.mark.parametrize("name", TOKENIZERS.names())
def test_out_of_range_values_clip(name):
    tok, train, x = fitted(name, CASES[name]["dims"][0])
    lo, hi = train.min(axis=(0, 1)), train.max(axis=(0, 1))  # [A]
    far = np.where(np.arange(H)[None, :, None] % 2 == 0, hi + 100 * (hi - lo), lo - 100 * (hi - lo))
    far = np.broadcast_to(far, x.shape)  # alternating far above / far below, [N, H, A]
    tokens = tok.encode(far)
    xhat = tok.decode(tokens)
    assert np.isfinite(xhat).all()
    assert all(np.asarray(t).min() >= 0 and np.asarray(t).max() < tok.vocab_size for t in tokens)
    if name == "bins":  # clip to the edge bins, decoded at their centres
        w = tok.bin_width()
        np.testing.assert_allclose(xhat[:, 0::2], np.broadcast_to(tok.high - w / 2, xhat[:, 0::2].shape), rtol=1e-6)
        np.testing.assert_allclose(xhat[:, 1::2], np.broadcast_to(tok.low + w / 2, xhat[:, 1::2].shape), rtol=1e-6)
    elif name == "longlat":
        t = np.asarray(tokens)
        assert set(t[:, 0::4].ravel()) == {tok.n_long - 1} and set(t[:, 2::4].ravel()) == {0}
        assert set(t[:, 1::4].ravel()) == {tok.vocab_size - 1} and set(t[:, 3::4].ravel()) == {tok.n_long}
    elif name == "fast":  # coefficients clip to the fitted alphabet: bounded, not exploding
        assert np.abs(xhat).max() < 100 * np.abs(train).max()


@pytest.mark.parametrize("name", TOKENIZERS.names())
def test_bad_inputs_raise_config_error(name):
    tok, train, x = fitted(name, CASES[name]["dims"][0])
    bad_actions = [x[0], x[:, :-1], x[..., :1], np.concatenate([x, x[..., :1]], -1), x[:0], "chunk"]
    for bad in bad_actions:
        with pytest.raises(ConfigError, match="actions"):
            tok.encode(bad)
    for value in (np.nan, np.inf):
        y = x.copy()
        y[3, 4, 1] = value
        with pytest.raises(ConfigError, match="finite"):
            tok.encode(y)
        with pytest.raises(ConfigError, match="finite"):
            build(name).fit(y)
    tokens = tok.encode(x[:4])
    if tok.fixed_length is not None:
        bad_tokens = [tokens[:, :-1], tokens[0], np.full_like(tokens, tok.vocab_size), -np.ones_like(tokens),
                      np.full(tokens.shape, np.nan)]
    else:
        bad_tokens = [[np.array([tok.vocab_size])], [np.array([-1])], [np.zeros((2, 2), np.int64)],
                      [np.array([0.5])], [], np.zeros(3, np.int64)]
    for bad in bad_tokens:
        with pytest.raises(ConfigError, match="tokens"):
            tok.decode(bad)


@pytest.mark.parametrize("name", TOKENIZERS.names())
def test_encode_decode_before_fit_raise(name):
    tok = build(name)
    x = case_data(name, CASES[name]["dims"][0])[:4]
    with pytest.raises(ConfigError, match="fit"):
        tok.encode(x)
    with pytest.raises(ConfigError, match="fit"):
        tok.decode(np.zeros((4, H * x.shape[-1]), np.int64) if name != "fast" else [np.array([0])])


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("bins", {"n_bins": 1}),
        ("bins", {"n_bins": 2.5}),
        ("bins", {"low": 1.0, "high": 0.0}),
        ("bins", {"low": -1.0}),
        ("bins", {"low": [0, 0, 0], "high": [1, 1]}),
        ("bins", {"low": 0.0, "high": [1.0, np.nan]}),
        ("bins", {"horizon": 0}),
        ("fast", {"vocab_size": 0}),
        ("fast", {"scale": 0.0}),
        ("fast", {"scale": float("nan")}),
        ("longlat", {"n_lat": 1}),
        ("longlat", {"long_range": (1.0, -1.0)}),
        ("longlat", {"lat_range": (0.0, 0.0)}),
        ("longlat", {"lat_range": 0.5}),
        ("longlat", {"mu": 0.0}),
    ],
)
def test_bad_constructor_args_raise_config_error(name, kwargs):
    with pytest.raises(ConfigError):
        TOKENIZERS.get(name)(**kwargs)


def test_registry_builds_every_tokenizer():
    assert {"bins", "fast", "longlat"} <= set(TOKENIZERS.names())
    for name in TOKENIZERS.names():
        tok = build(name)
        assert isinstance(tok, ActionTokenizer) and tok.name == name and tok.vocab_size > 0


def test_bins_explicit_range_works_without_fit():
    tok = BinsTokenizer(n_bins=10, low=-1.0, high=[1.0, 3.0], horizon=2, action_dim=2)
    x = np.array([[[0.0, -1.0], [1.0, 5.0]]])  # [1, 2, 2]
    t = tok.encode(x)
    np.testing.assert_array_equal(t, [[5, 0, 9, 9]])  # step-major [t0d0, t0d1, t1d0, t1d1]
    np.testing.assert_allclose(tok.decode(t), [[[0.1, -0.8], [0.9, 2.8]]], rtol=1e-6)
    assert tok.fixed_length == 4 and tok.vocab_size == 10
    with pytest.raises(ConfigError, match="horizon"):
        tok.fit(np.zeros((3, 5, 2)))  # horizon was given: data of another H is an error


def test_fast_compresses_and_tolerates_malformed_sequences():
    tok, _, x = fitted("fast", 2)
    tokens = tok.encode(x[:8])
    short, long = [t[:1] for t in tokens], [np.concatenate([t, t, t]) for t in tokens]
    for bad in (short, long, [np.array([], np.int64)] * 8):  # padded / truncated to H*A coefficients
        y = tok.decode(bad)
        assert y.shape == (8, H, 2) and np.isfinite(y).all()
    with pytest.raises(ConfigError, match="vocab_size"):
        TOKENIZERS.get("fast")(vocab_size=8).fit(x)  # alphabet larger than the vocabulary


def test_longlat_vocabularies_and_mu_law_bins():
    tok, _, x = fitted("longlat", 2)
    t = tok.encode(x)
    assert (t[:, 0::2] < tok.n_long).all() and (t[:, 1::2] >= tok.n_long).all()
    assert tok.vocab_size == 64 + 128
    hw = tok.lat_half_width(np.array([0.0, 0.3, 0.78]))
    assert hw[0] < hw[1] < hw[2] and hw[2] / hw[0] > 10  # finer near zero steering
    with pytest.raises(ConfigError, match="longitudinal"):
        tok.decode(t[:, ::-1])  # lateral ids in longitudinal slots
    with pytest.raises(ConfigError, match=r"\[N, H, 2\]"):
        LongLatTokenizer().fit(np.zeros((4, H, 3)))
