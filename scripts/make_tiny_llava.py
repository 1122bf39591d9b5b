#!/usr/bin/env python3
"""Synthesize a tiny random-weight LLaVA-style pair, and test pictures, for the vision tests:

  tiny-llama.gguf   : arch "llama", 2 layers, n_embd 64, SPM ("llama") vocab of ~360 tokens
                      (specials + 256 byte-fallback tokens + printable ASCII), ChatML template.
  tiny-mmproj.gguf  : arch "clip", clip.projector_type "mlp" (LLaVA-1.5 style): ViT with CLS token,
                      2 blocks, n_embd 64, 32x32 image / 8x8 patches, MLP projector 64 -> 128 -> 64.

  tiny-mmproj-wrong-width.gguf : the same projector with 32-wide output, which the model refuses.
  picture-a.png / .rgb, picture-b.png / .rgb : 48x40 test pictures, PNG and raw RGB8 pixels.

Run through scripts/make-tiny-llava.sh (pins gguf and numpy in a private venv). Weights and
pictures are deterministic (seeded), so the files are byte-reproducible for a given gguf version.
Usage: make_tiny_llava.py OUT_DIR [--seed N]
"""
import argparse, os, struct, zlib
import numpy as np
import gguf

TEXT_EMBD = 64


def rnd(rng, *shape, std=0.02, dtype=np.float16):
    return (rng.standard_normal(shape) * std).astype(dtype)


def ones(n):
    return np.ones(n, dtype=np.float32)


def zeros(n):
    return np.zeros(n, dtype=np.float32)


def make_text(path, rng, n_embd=TEXT_EMBD, n_head=4, n_head_kv=2, n_layer=2, n_ff=128, n_ctx=512,
              name="tiny-random-llama"):
    """The text model; the defaults make tiny-llama.gguf (scripts/make_random_llama.py makes
    bigger ones with the same vocab)."""
    head_dim = n_embd // n_head

    # ---- SPM vocab: specials, 256 byte tokens, printable ASCII pieces ----
    T = gguf.TokenType
    toks, scores, types = [], [], []

    def add(t, s, ty):
        toks.append(t); scores.append(s); types.append(ty)

    add("<unk>", 0.0, T.UNKNOWN)
    add("<s>", 0.0, T.CONTROL)
    add("</s>", 0.0, T.CONTROL)
    add("<|im_start|>", 0.0, T.CONTROL)
    add("<|im_end|>", 0.0, T.CONTROL)
    for b in range(256):
        add(f"<0x{b:02X}>", 0.0, T.BYTE)
    add("\u2581", -1.0, T.NORMAL)  # SPM word-boundary marker
    for c in range(33, 127):
        add(chr(c), -2.0 - c / 1000.0, T.NORMAL)
    # a few whole words; SPM only merges adjacent pieces whose concatenation is in the vocab,
    # so every prefix ("\u2581t", "\u2581th", "\u2581the") is added too (longer = better score)
    seen = set(toks)
    for word in ["the", "a", "is", "an", "of", "image", "what", "in", "this", "hello", "cat", "dog"]:
        for k in range(1, len(word) + 1):
            piece = "\u2581" + word[:k]
            if piece not in seen:
                seen.add(piece); add(piece, -1.0 + k / 10.0, T.NORMAL)
    n_vocab = len(toks)

    w = gguf.GGUFWriter(path, "llama")
    w.add_name(name)
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_vocab_size(n_vocab)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(toks)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)
    w.add_chat_template(
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

    # numpy shape = reversed ggml ne
    w.add_tensor("token_embd.weight", rnd(rng, n_vocab, n_embd))
    w.add_tensor("output_norm.weight", ones(n_embd))
    w.add_tensor("output.weight", rnd(rng, n_vocab, n_embd))
    kv = n_head_kv * head_dim
    for i in range(n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", ones(n_embd))
        w.add_tensor(p + "attn_q.weight", rnd(rng, n_embd, n_embd))
        w.add_tensor(p + "attn_k.weight", rnd(rng, kv, n_embd))
        w.add_tensor(p + "attn_v.weight", rnd(rng, kv, n_embd))
        w.add_tensor(p + "attn_output.weight", rnd(rng, n_embd, n_embd))
        w.add_tensor(p + "ffn_norm.weight", ones(n_embd))
        w.add_tensor(p + "ffn_gate.weight", rnd(rng, n_ff, n_embd))
        w.add_tensor(p + "ffn_up.weight", rnd(rng, n_ff, n_embd))
        w.add_tensor(p + "ffn_down.weight", rnd(rng, n_embd, n_ff))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


def make_mmproj(path, rng, out_embd=TEXT_EMBD):
    n_embd, n_head, n_ff, n_layer = 64, 4, 128, 2
    image_size, patch_size = 32, 8
    n_pos = (image_size // patch_size) ** 2 + 1  # + CLS
    proj_hidden = 128

    w = gguf.GGUFWriter(path, "clip")
    w.add_name("tiny-random-clip-mlp")
    w.add_description("random-weight LLaVA-style mmproj for tests")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_bool("clip.has_text_encoder", False)
    w.add_bool("clip.has_vision_encoder", True)
    w.add_bool("clip.has_llava_projector", True)  # legacy key, harmless
    w.add_string("clip.projector_type", "mlp")
    w.add_uint32("clip.vision.image_size", image_size)
    w.add_uint32("clip.vision.patch_size", patch_size)
    w.add_uint32("clip.vision.embedding_length", n_embd)
    w.add_uint32("clip.vision.feed_forward_length", n_ff)
    w.add_uint32("clip.vision.projection_dim", out_embd)
    w.add_uint32("clip.vision.attention.head_count", n_head)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-5)
    w.add_uint32("clip.vision.block_count", n_layer)
    w.add_array("clip.vision.image_mean", [0.48145466, 0.4578275, 0.40821073])
    w.add_array("clip.vision.image_std", [0.26862954, 0.26130258, 0.27577711])
    w.add_bool("clip.use_gelu", False)  # -> quick_gelu, as in CLIP ViT-L

    w.add_tensor("v.patch_embd.weight", rnd(rng, n_embd, 3, patch_size, patch_size))  # ne [p, p, 3, n_embd]
    w.add_tensor("v.class_embd", rnd(rng, n_embd, dtype=np.float32))
    w.add_tensor("v.position_embd.weight", rnd(rng, n_pos, n_embd))
    w.add_tensor("v.pre_ln.weight", ones(n_embd))
    w.add_tensor("v.pre_ln.bias", zeros(n_embd))
    for i in range(n_layer):
        p = f"v.blk.{i}."
        for t in ("attn_q", "attn_k", "attn_v", "attn_out"):
            w.add_tensor(p + t + ".weight", rnd(rng, n_embd, n_embd))
            w.add_tensor(p + t + ".bias", zeros(n_embd))
        w.add_tensor(p + "ln1.weight", ones(n_embd)); w.add_tensor(p + "ln1.bias", zeros(n_embd))
        w.add_tensor(p + "ln2.weight", ones(n_embd)); w.add_tensor(p + "ln2.bias", zeros(n_embd))
        # ffn_up: n_embd -> n_ff (ne [n_embd, n_ff]); ffn_down: n_ff -> n_embd. n_ff != n_embd so
        # clip.cpp's legacy "is_ffn_swapped" heuristic (ffn_down.ne[0] == n_embd) does not fire.
        w.add_tensor(p + "ffn_up.weight", rnd(rng, n_ff, n_embd)); w.add_tensor(p + "ffn_up.bias", zeros(n_ff))
        w.add_tensor(p + "ffn_down.weight", rnd(rng, n_embd, n_ff)); w.add_tensor(p + "ffn_down.bias", zeros(n_embd))
    # LLaVA MLP projector: mm.0 (vision n_embd -> hidden), GELU, mm.2 (hidden -> text n_embd)
    w.add_tensor("mm.0.weight", rnd(rng, proj_hidden, n_embd)); w.add_tensor("mm.0.bias", zeros(proj_hidden))
    w.add_tensor("mm.2.weight", rnd(rng, out_embd, proj_hidden)); w.add_tensor("mm.2.bias", zeros(out_embd))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


def picture(rng, kind, width=48, height=40):
    """RGB8 pixels: 'a' a smooth gradient with a bright square, 'b' seeded noise."""
    if kind == "a":
        y, x = np.mgrid[0:height, 0:width]
        img = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), np.full_like(x, 96)], axis=-1)
        img[8:24, 12:30] = [250, 250, 40]
    else:
        img = rng.integers(0, 256, size=(height, width, 3))
    return img.astype(np.uint8)


def write_png(path, img):
    """A plain 8-bit RGB PNG (no filter), written without an imaging library."""
    h, w, _ = img.shape
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    make_text(os.path.join(a.out_dir, "tiny-llama.gguf"), rng)
    make_mmproj(os.path.join(a.out_dir, "tiny-mmproj.gguf"), rng)
    for kind in ("a", "b"):
        img = picture(rng, kind)
        write_png(os.path.join(a.out_dir, f"picture-{kind}.png"), img)
        with open(os.path.join(a.out_dir, f"picture-{kind}.rgb"), "wb") as f:
            f.write(img.tobytes())
    make_mmproj(os.path.join(a.out_dir, "tiny-mmproj-wrong-width.gguf"), rng, out_embd=32)
    for f in sorted(os.listdir(a.out_dir)):
        print(f, os.path.getsize(os.path.join(a.out_dir, f)))


if __name__ == "__main__":
    main()
