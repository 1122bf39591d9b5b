//! Runs into the host's caps through the raw imports and prints one `case: code` line each:
//! graphs loaded until Busy, a `ctx-size` above the cap, an input above the cap; then shows
//! that unloading makes room again.
//!
//!     caps.wasm MODEL.gguf

use raw_nn::*;

fn main() {
    let model = std::fs::read(std::env::args().nth(1).expect("MODEL.gguf")).expect("the model file");
    let builders = [Buf { ptr: model.as_ptr(), len: model.len() as u32 }];
    let mut graphs = Vec::new();
    let refused = loop {
        let mut g = 0;
        let code = unsafe { load(builders.as_ptr(), 1, GGML, CPU, &mut g) };
        if code != 0 || graphs.len() == 100 {
            break code;
        }
        graphs.push(g);
    };
    println!("graphs_loaded: {}", graphs.len());
    println!("one_more_graph: {refused}");
    let g = graphs[0];
    let mut c = 0;
    unsafe {
        assert_eq!(init_execution_context(g, &mut c), 0);
        println!("ctx_size_at_cap: {}", set_input(c, 1, &tensor(br#"{"ctx-size": 1024}"#)));
        println!("ctx_size_above_cap: {}", set_input(c, 1, &tensor(br#"{"ctx-size": 1025}"#)));
        let big = vec![b'a'; (1 << 20) + 1];
        println!("input_above_cap: {}", set_input(c, 0, &tensor(&big)));
        println!("input_at_cap: {}", set_input(c, 0, &tensor(&big[..1 << 20])));
        println!("unload: {}", unload(graphs.pop().unwrap()));
        let mut g2 = 0;
        println!("load_after_unload: {}", load(builders.as_ptr(), 1, GGML, CPU, &mut g2));
    }
}
