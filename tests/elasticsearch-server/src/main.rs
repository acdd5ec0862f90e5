//! `cairn-es-test-server`: runs the Elasticsearch test double as a process (for benchmarks and
//! tools such as elasticdump). Prints its URL on one stdout line once listening.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use cairn_es_test_server::{EsServer, Options};

const USAGE: &str = "usage: cairn-es-test-server [--flavor es7|es8|opensearch2] [--tls] \
[--lenient-settings] [--listen ADDR] [--path-repo DIR] [--user U --password P] \
[--seed INDEX:COUNT ...] [--snapshot-delay-ms N] [--log-requests]

--flavor es8 serves HTTPS with its own CA (its path and SHA-256 fingerprint are printed on
stderr) and user `elastic` (password cairn-test-elastic-password) unless --user is given.
Every flavor refuses unknown, archived and private settings; --lenient-settings accepts any.

A TEST DOUBLE of the Elasticsearch REST subset Cairn uses (not Elasticsearch).
Faults can be injected with POST /_cairn_test/faults (a test-only endpoint).";

fn main() {
    if let Err(e) = try_main() {
        eprintln!("cairn-es-test-server: {e}");
        eprintln!("{USAGE}");
        std::process::exit(2);
    }
}

fn try_main() -> Result<(), String> {
    let mut opts = Options {
        listen: "127.0.0.1:9200".parse().expect("valid address"),
        ..Options::es7()
    };
    let mut seeds: Vec<(String, usize)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--listen" => {
                let v = value("--listen")?;
                opts.listen = v.parse().map_err(|e| format!("--listen {v}: {e}"))?;
            }
            "--flavor" => {
                let v = value("--flavor")?;
                let preset = match v.as_str() {
                    "es7" => Options::es7(),
                    "es8" => Options::es8(),
                    "opensearch2" => Options::opensearch2(),
                    other => return Err(format!("--flavor {other}: es7, es8 or opensearch2")),
                };
                opts = Options {
                    listen: opts.listen,
                    path_repo: opts.path_repo,
                    snapshot_delay: opts.snapshot_delay,
                    log_requests: opts.log_requests,
                    ..preset
                };
            }
            "--tls" => opts.tls = Some(cairn_es_test_server::TlsOptions::default()),
            "--lenient-settings" => opts.strict_settings = false,
            "--path-repo" => opts.path_repo = Some(PathBuf::from(value("--path-repo")?)),
            "--user" => opts.username = Some(value("--user")?),
            "--password" => opts.password = Some(value("--password")?),
            "--seed" => {
                let v = value("--seed")?;
                let (index, count) = v
                    .rsplit_once(':')
                    .ok_or_else(|| format!("--seed {v}: expected INDEX:COUNT"))?;
                let count = count
                    .replace('_', "")
                    .parse()
                    .map_err(|e| format!("--seed {v}: bad count: {e}"))?;
                seeds.push((index.to_string(), count));
            }
            "--snapshot-delay-ms" => {
                let v = value("--snapshot-delay-ms")?;
                let ms: u64 = v
                    .parse()
                    .map_err(|e| format!("--snapshot-delay-ms {v}: {e}"))?;
                opts.snapshot_delay = std::time::Duration::from_millis(ms);
            }
            "--log-requests" => opts.log_requests = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if opts.username.is_some() != opts.password.is_some() {
        return Err("--user and --password go together".into());
    }
    let server = EsServer::try_start(opts).map_err(|e| format!("cannot start: {e}"))?;
    for (index, count) in seeds {
        let started = Instant::now();
        server.seed(&index, count);
        eprintln!(
            "cairn-es-test-server: seeded {count} documents into [{index}] in {} ms",
            started.elapsed().as_millis()
        );
    }
    if let (Some(ca), Some(fp)) = (server.ca_pem(), server.ca_fingerprint()) {
        eprintln!(
            "cairn-es-test-server: CA certificate {} (SHA-256 fingerprint {fp})",
            ca.display()
        );
    }
    println!("{}", server.url());
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    loop {
        std::thread::park();
    }
}
