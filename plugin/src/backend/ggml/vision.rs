//! Images for LLaVA-style models: the projector (`mmproj`) through llama.cpp's multimodal
//! library (mtmd), the images a context was given, and the prompt that places them.
//!
//! A context's images come from three places: the `image` metadata key (a file), base64
//! data-URI tags `<img src="data:image/...;base64,...">` inside the prompt, and tensors at
//! input index 2 (encoded bytes, or raw RGB8 pixels with dims `[1, H, W, 3]`). A tag stands
//! where it is. `<image>` markers in the prompt take the other images in order: the file
//! first, then the tensors. Images left without a marker go at the start of the prompt, in
//! that order; more markers than images is an error.

use crate::abi::{Tensor, TensorType};
use crate::error::{NnError, NnResult};
use base64::Engine;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::mtmd::{
    mtmd_default_marker, MtmdBitmap, MtmdContext, MtmdContextParams, MtmdInputChunks, MtmdInputText,
};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Where the guest marks an image in its prompt.
pub const IMAGE_MARKER: &str = "<image>";

/// A loaded projector (mmproj) for one model.
pub struct Vision {
    ctx: Mutex<MtmdContext>,
}

impl Vision {
    /// Load a projector for `model`; one whose output width is not the model's is refused.
    pub fn load(path: &Path, model: &LlamaModel, threads: u32) -> NnResult<Self> {
        let params = MtmdContextParams {
            use_gpu: false,
            print_timings: false,
            n_threads: threads as i32,
            ..MtmdContextParams::default()
        };
        let name = path.to_str().ok_or_else(|| NnError::invalid_argument("mmproj path is not UTF-8"))?;
        let started = std::time::Instant::now();
        let ctx = MtmdContext::init_from_file(name, model, &params).map_err(|e| {
            NnError::invalid_argument(format!(
                "cannot use '{}' as a projector (mmproj) for this model ({e}): it must be a CLIP-style mmproj \
                 GGUF whose output width equals the model's embedding width ({}); turn on the log for \
                 llama.cpp's reason",
                path.display(),
                model.n_embd()
            ))
        })?;
        log::info!("loaded projector {} in {} ms", path.display(), started.elapsed().as_millis());
        Ok(Self { ctx: Mutex::new(ctx) })
    }

    /// Whether images take other positions than their tokens (M-RoPE): their KV cannot be
    /// told apart by position, so it is never reused.
    pub fn uses_mrope(&self) -> bool {
        self.lock().decode_use_mrope()
    }

    /// The mtmd context, for encoding (one image encoding at a time per projector).
    pub fn lock(&self) -> MutexGuard<'_, MtmdContext> {
        self.ctx.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn decode(&self, image: &Image) -> NnResult<MtmdBitmap> {
        let bitmap = match image {
            Image::Encoded(bytes) => MtmdBitmap::from_buffer(&self.lock(), bytes, false),
            Image::Rgb { width, height, pixels } => MtmdBitmap::from_image_data(*width, *height, pixels),
        };
        bitmap.map_err(|e| {
            NnError::invalid_argument(format!(
                "{} cannot be decoded as an image ({e}); give PNG, JPEG, BMP, GIF, TGA or PNM bytes, \
                 or raw RGB8 pixels with dims [1, H, W, 3]",
                image.describe()
            ))
        })
    }

    /// Tokenize a prompt with its images, placed as the module's notes say. Each image's
    /// chunk carries the image's [`Image::id`], so a later prompt can tell the same picture.
    pub fn tokenize(&self, prompt: &MediaPrompt) -> NnResult<MtmdInputChunks> {
        self.tokenize_part(&prompt.text, &prompt.images, true)
    }

    /// Tokenize `text` with `images`, the start of a prompt (`add_special`: BOS) or a later
    /// part of one.
    pub fn tokenize_part(&self, text: &str, images: &[Image], add_special: bool) -> NnResult<MtmdInputChunks> {
        let mut bitmaps = images.iter().map(|i| self.decode(i)).collect::<NnResult<Vec<_>>>()?;
        for (bitmap, image) in bitmaps.iter_mut().zip(images) {
            bitmap.set_id(&image.id()).expect("hex has no NUL");
        }
        let refs: Vec<&MtmdBitmap> = bitmaps.iter().collect();
        let text = MtmdInputText { text: text.to_owned(), add_special, parse_special: true };
        self.lock().tokenize(text, &refs).map_err(|e| {
            NnError::invalid_argument(format!("the prompt and its images cannot be tokenized together: {e}"))
        })
    }
}

/// One image a guest gave.
#[derive(Clone, Debug, PartialEq)]
pub enum Image {
    Encoded(Vec<u8>),
    Rgb { width: u32, height: u32, pixels: Vec<u8> },
}

impl Image {
    /// An image tensor: U8 bytes of an image file, or raw RGB8 pixels with dims `[1, H, W, 3]`
    /// (or `[H, W, 3]`).
    pub fn from_tensor(t: Tensor<'_>) -> NnResult<Self> {
        if t.ty != TensorType::U8 {
            return Err(NnError::invalid_argument(format!("an image tensor must be U8, not {:?}", t.ty)));
        }
        let rgb = match t.dims.as_slice() {
            [1, h, w, 3] | [h, w, 3] => Some((*w, *h)),
            _ => None,
        };
        match rgb {
            Some((width, height)) => {
                let expected = (width as u64) * (height as u64) * 3;
                if expected != t.data.len() as u64 || width == 0 || height == 0 {
                    return Err(NnError::invalid_argument(format!(
                        "raw RGB image of {width}x{height} needs {expected} bytes, the tensor has {}",
                        t.data.len()
                    )));
                }
                Ok(Self::Rgb { width, height, pixels: t.data.to_vec() })
            }
            None => Ok(Self::Encoded(t.data.to_vec())),
        }
    }

    /// What tells this picture from any other: a hash of its bytes (and, for raw pixels,
    /// its size).
    pub fn id(&self) -> String {
        use xxhash_rust::xxh3::Xxh3;
        let mut h = Xxh3::new();
        match self {
            Image::Encoded(bytes) => {
                h.update(b"encoded");
                h.update(bytes);
            }
            Image::Rgb { width, height, pixels } => {
                h.update(b"rgb");
                h.update(&width.to_le_bytes());
                h.update(&height.to_le_bytes());
                h.update(pixels);
            }
        }
        format!("{:032x}", h.digest128())
    }

    fn describe(&self) -> String {
        match self {
            Image::Encoded(b) => format!("the {}-byte image", b.len()),
            Image::Rgb { width, height, .. } => format!("the {width}x{height} RGB image"),
        }
    }
}

/// A prompt in mtmd's terms: text with mtmd's marker once per image, and the images in order.
#[derive(Debug, PartialEq)]
pub struct MediaPrompt {
    pub text: String,
    pub images: Vec<Image>,
}

const TAG_START: &str = "<img src=\"data:";

/// Place `given` images (the `image` file, then tensors) and the prompt's base64 tags.
/// `None` when there is no image at all: the prompt is plain text.
pub fn media_prompt(prompt: &str, given: Vec<Image>) -> NnResult<Option<MediaPrompt>> {
    let marker = mtmd_default_marker();
    if given.is_empty() && !prompt.contains(TAG_START) {
        return Ok(None);
    }
    let mut given = given.into_iter();
    let (mut text, mut images) = (String::with_capacity(prompt.len()), Vec::new());
    let mut rest = prompt;
    loop {
        let tag = rest.find(TAG_START);
        let mark = rest.find(IMAGE_MARKER);
        match (tag, mark) {
            (Some(t), m) if m.map_or(true, |m| t < m) => {
                text.push_str(&rest[..t]);
                let (image, after) = data_uri(&rest[t..])?;
                images.push(image);
                text.push_str(marker);
                rest = after;
            }
            (_, Some(m)) => {
                text.push_str(&rest[..m]);
                let image = given.next().ok_or_else(|| {
                    NnError::invalid_argument(format!(
                        "the prompt has more {IMAGE_MARKER} markers than images were given (with the `image` \
                         key or as tensors at input index 2)"
                    ))
                })?;
                images.push(image);
                text.push_str(marker);
                rest = &rest[m + IMAGE_MARKER.len()..];
            }
            _ => break,
        }
    }
    text.push_str(rest);
    // Images without a marker go first.
    let unplaced: Vec<Image> = given.collect();
    if !unplaced.is_empty() {
        let head = format!("{marker}\n").repeat(unplaced.len());
        text.insert_str(0, &head);
        let mut all = unplaced;
        all.append(&mut images);
        images = all;
    }
    Ok(Some(MediaPrompt { text, images }))
}

/// Decode a `<img src="data:image/TYPE;base64,DATA">` tag at the start of `s`: the image and
/// what follows the tag.
fn data_uri(s: &str) -> NnResult<(Image, &str)> {
    let bad =
        |why: &str| NnError::invalid_argument(format!("malformed <img src=\"data:...\"> tag in the prompt: {why}"));
    let body = &s[TAG_START.len()..];
    let end = body.find('"').ok_or_else(|| bad("no closing quote"))?;
    let uri = &body[..end];
    let after = &body[end + 1..];
    let close = after.find('>').ok_or_else(|| bad("no closing '>'"))?;
    let (kind, data) = uri.split_once(";base64,").ok_or_else(|| bad("only base64 data URIs are supported"))?;
    if !kind.starts_with("image/") {
        return Err(bad(&format!("'{kind}' is not an image type")));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| bad(&format!("invalid base64 ({e})")))?;
    Ok((Image::Encoded(bytes), &after[close + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(b: &[u8]) -> Image {
        Image::Encoded(b.to_vec())
    }

    #[test]
    fn text_without_images_stays_text() {
        assert_eq!(media_prompt("describe <image> please", vec![]).unwrap(), None);
    }

    #[test]
    fn markers_take_given_images_in_order_and_tags_stand_where_they_are() {
        let m = mtmd_default_marker();
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"PNGDATA");
        let prompt = format!("a <image> b <img src=\"data:image/png;base64,{b64}\"> c <image>");
        let p = media_prompt(&prompt, vec![enc(b"one"), enc(b"two")]).unwrap().unwrap();
        assert_eq!(p.text, format!("a {m} b {m} c {m}"));
        assert_eq!(p.images, vec![enc(b"one"), enc(b"PNGDATA"), enc(b"two")]);
    }

    #[test]
    fn unplaced_images_go_first_and_extra_markers_are_refused() {
        let m = mtmd_default_marker();
        let p = media_prompt("hello", vec![enc(b"one")]).unwrap().unwrap();
        assert_eq!(p.text, format!("{m}\nhello"));
        assert!(media_prompt("<image><image>", vec![enc(b"one")]).is_err());
    }

    #[test]
    fn bad_tags_are_invalid_arguments() {
        for bad in [
            "<img src=\"data:image/png;base64,!!!\">",
            "<img src=\"data:text/plain;base64,AA==\">",
            "<img src=\"data:image/png",
        ] {
            assert!(media_prompt(bad, vec![]).is_err(), "{bad}");
        }
    }

    #[test]
    fn rgb_tensors_need_matching_sizes() {
        let zeros = [0u8; 32];
        let t = |dims: Vec<u32>, n: usize| Tensor { dims, ty: TensorType::U8, data: &zeros[..n] };
        assert!(matches!(Image::from_tensor(t(vec![1, 2, 3, 3], 18)).unwrap(), Image::Rgb { width: 3, height: 2, .. }));
        assert!(Image::from_tensor(t(vec![1, 2, 3, 3], 17)).is_err());
        assert!(matches!(Image::from_tensor(t(vec![1], 5)).unwrap(), Image::Encoded(_)));
    }
}
