//! Benchmark: new Store + instantiate + one call (`describe`) of a built-in
//! Rust task, with the compile cache warm. Prints p50/p90/p99 in microseconds.
//!
//! Run with `cargo bench -p cairn --bench instantiate` (or `bench/run`).

use std::sync::Arc;
use std::time::Instant;

use cairn::model::ModuleRef;
use cairn::runtime::Runtime;
use cairn::state::StateStore;
use cairn::state::sqlite::SqliteStore;

fn main() -> anyhow::Result<()> {
    let iterations: usize = std::env::var("CAIRN_BENCH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let cache = std::env::temp_dir().join(format!("cairn-bench-cache-{}", std::process::id()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let runtime = Runtime::new(Some(&cache))?;
        let store: Arc<dyn StateStore> = Arc::new(SqliteStore::open_in_memory()?);
        let module = runtime
            .load(&ModuleRef::builtin("command"))
            .await?;
        // Warm-up.
        for _ in 0..200 {
            cairn::runner::describe(&runtime, &module, store.clone()).await?;
        }
        let mut samples = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let t = Instant::now();
            let d = cairn::runner::describe(&runtime, &module, store.clone()).await?;
            samples.push(t.elapsed().as_secs_f64() * 1e6);
            assert_eq!(d.name, "command");
        }
        samples.sort_by(f64::total_cmp);
        let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
        println!(
            "instantiate+call builtin:command describe: n={iterations} p50={:.1}us p90={:.1}us p99={:.1}us (target p50 <= 500us)",
            pct(0.5),
            pct(0.9),
            pct(0.99)
        );
        anyhow::Ok(())
    })?;
    let _ = std::fs::remove_dir_all(&cache);
    Ok(())
}
