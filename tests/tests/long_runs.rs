//! Long runs in one process: nothing a cycle allocates may stay behind.

use e2e::{guest, labelled, plugin_dir, root, wasmedge_bin};

/// 1000 times load (bytes) → init → set_input → compute → get_output → finalize → unload of
/// the tiny model, in one `wasmedge` process: every answer equals the first, and the host's
/// resident memory after the warm-up (100 cycles) grows by less than 2%.
#[test]
fn a_thousand_graph_lifetimes_leave_nothing_behind() {
    let (cycles, every) = (1000, 50);
    // `exec` keeps the shell's process id, so the guest can be given the host's /proc entry.
    let script = format!(
        "exec '{}' --dir .:. --dir /hostproc:/proc/$$ '{}' test-models/tiny/tiny-llama.gguf {cycles} {every}",
        wasmedge_bin().display(),
        guest("cycles").display()
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .current_dir(root())
        .env("WASMEDGE_PLUGIN_PATH", plugin_dir())
        .output()
        .expect("run wasmedge");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(labelled(&stdout, "cycles"), cycles.to_string());
    assert!(!labelled(&stdout, "answer").trim_matches('"').is_empty(), "the tiny model answered nothing");
    let rss = |i: usize| -> f64 { labelled(&stdout, &format!("rss {i}")).parse().unwrap() };
    let warm = rss(100);
    assert!(warm > 50_000.0, "the host's RSS was not readable: {warm}");
    // The last three readings' median against the warm-up's (one reading can catch a
    // transient allocation).
    let mut last = [rss(cycles - 2 * every), rss(cycles - every), rss(cycles)];
    last.sort_by(f64::total_cmp);
    let growth = last[1] / warm - 1.0;
    let readings: Vec<f64> = (1..=cycles / every).map(|k| rss(k * every) / 1024.0).collect();
    println!("RSS (MiB) every {every} cycles: {readings:.1?}; growth after warm-up {:.2}%", growth * 100.0);
    assert!(growth < 0.02, "RSS grew by {:.2}% from cycle 100 to {cycles}", growth * 100.0);
}
