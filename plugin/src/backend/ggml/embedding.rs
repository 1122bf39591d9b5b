//! Embedding mode (`"embedding": true`): output 0 is the prompt's embedding vector, as JSON
//! `{"n_embedding": N, "embedding": [...]}`, normalised as llama.cpp does
//! (`common_embd_normalize`, chosen by `embd-normalize`).

/// `v` scaled as llama.cpp's `--embd-normalize KIND` does: -1 none, 0 max absolute (to the
/// int16 range), 2 euclidean, any other p the p-norm (1: taxicab).
pub fn normalize(v: &mut [f32], kind: i32) {
    let sum: f64 = match kind {
        -1 => 1.0,
        0 => v.iter().fold(0.0f64, |m, &x| m.max(f64::from(x.abs()))) / 32760.0,
        2 => v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt(),
        p => v.iter().map(|&x| f64::from(x.abs()).powi(p)).sum::<f64>().powf(1.0 / f64::from(p)),
    };
    // As llama.cpp: the factor in single precision.
    let norm = if sum > 0.0 { (1.0 / sum) as f32 } else { 0.0 };
    for x in v {
        *x *= norm;
    }
}

/// Output 0 in embedding mode.
pub fn to_json(v: &[f32]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "n_embedding": v.len(), "embedding": v })).expect("numbers serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-6 * y.abs().max(1.0))
    }

    #[test]
    fn euclidean_gives_unit_length_and_the_others_their_norms() {
        for (kind, v, want) in [
            (2, vec![3.0, -4.0], vec![0.6, -0.8]),
            (1, vec![1.0, -3.0], vec![0.25, -0.75]),
            (0, vec![0.5, -2.0], vec![8190.0, -32760.0]),
            (-1, vec![0.5, -2.0], vec![0.5, -2.0]),
            (3, vec![1.0, 2.0], vec![1.0 / 9f32.cbrt(), 2.0 / 9f32.cbrt()]),
            (2, vec![0.0; 3], vec![0.0; 3]),
        ] {
            let mut got = v.clone();
            normalize(&mut got, kind);
            assert!(close(&got, &want), "{kind}: {v:?} -> {got:?}, want {want:?}");
        }
    }

    #[test]
    fn json_has_the_length_and_the_numbers() {
        let j: serde_json::Value = serde_json::from_slice(&to_json(&[0.5, -0.25])).unwrap();
        assert_eq!(j, serde_json::json!({"n_embedding": 2, "embedding": [0.5, -0.25]}));
    }
}
