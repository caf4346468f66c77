//! The interpreter's overhead, measured with the release `orchc` binary:
//!
//! 1. a chain of 1,000 steps that do no I/O, each committed durably to SQLite
//!    (`synchronous=FULL`), against a one-step workflow: the difference per step is the overhead;
//! 2. a `for` over 1,000 elements whose step makes one HTTP GET to a local server (limit 16),
//!    against the same 1,000 requests made directly with reqwest, 16 at a time, by a process of
//!    their own (this binary, run again with `direct`): both sides are timed from the start of a
//!    process to its end, so that the ratio does not charge `orchc` alone with starting and
//!    leaving a process. The direct requests' own time, measured inside their process, is printed
//!    too, with the ratio against it.
//!
//! Run with `cargo bench --bench run`. Times are wall clock on this machine. Shared machines are
//! noisy (the same run varies by half from one minute to the next), so the measurements are taken
//! in rounds, each round timing every variant once, one after the other; a ratio is computed
//! within each round and the median over the rounds is reported, with the lowest and highest.

use std::process::Command;
use std::time::{Duration, Instant};

// The direct requests run with the allocator `orchc` runs with, so that the ratio is the
// interpreter's overhead and not a difference of allocators (jemalloc alone makes these direct
// requests 5 to 7% faster here).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const CONCURRENCY: usize = 16;
const ROUNDS: usize = 15;

/// `orchc` as cargo built it for this target: with the bench profile under `cargo bench`.
fn orchc() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_orchc"))
}

fn chain(n: usize) -> String {
    let mut src = String::from("step s0(seed: Int) -> (v0: Int) {\n  { v0: seed + 1 }\n}\n");
    for i in 1..n {
        src.push_str(&format!("step s{i}(v{}: Int) -> (v{i}: Int) {{\n  {{ v{i}: v{} + 1 }}\n}}\n", i - 1, i - 1));
    }
    let calls: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
    src.push_str(&format!("workflow chain(seed: Int = 0) -> (v{}: Int) {{\n  {}\n}}\n", n - 1, calls.join(" >> ")));
    src
}

/// One `orchc run` of `file` with a new store in `dir`, its progress read through a pipe.
fn time_run(bin: &std::path::Path, file: &std::path::Path, dir: &std::path::Path, round: usize) -> Duration {
    let db = dir.join(format!("bench-{}-{round}.db", file.file_stem().unwrap().to_string_lossy()));
    let started = Instant::now();
    let out = Command::new(bin).arg("run").arg(file).arg("--db").arg(&db).output().unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    took
}

/// The median, lowest and highest of `xs`.
fn spread(mut xs: Vec<f64>) -> (f64, f64, f64) {
    xs.sort_by(f64::total_cmp);
    (xs[xs.len() / 2], xs[0], xs[xs.len() - 1])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, url, requests] = args.as_slice() {
        if mode == "direct" {
            let took = direct(url, requests.parse().expect("a number of requests"));
            println!("{}", took.as_nanos());
            return;
        }
    }
    // `cargo test --all-targets` runs this without `--bench`: then a small version proves the
    // benchmark still works, and its figures mean nothing.
    let measuring = std::env::args().any(|a| a == "--bench");
    let (steps, requests, rounds) = if measuring { (1000, 1000, ROUNDS) } else { (10, 20, 1) };
    if !measuring {
        println!("a small run under `cargo test` to prove the benchmark works; its figures mean nothing");
    }
    let bin = orchc();
    let dir = tempfile::tempdir().unwrap();

    let one = dir.path().join("one.orch");
    std::fs::write(&one, chain(1)).unwrap();
    let long = dir.path().join("chain.orch");
    std::fs::write(&long, chain(steps)).unwrap();
    let (mut per_step, mut bases, mut fulls) = (vec![], vec![], vec![]);
    for round in 0..rounds {
        let base = time_run(&bin, &one, dir.path(), round);
        let full = time_run(&bin, &long, dir.path(), round);
        per_step.push(ms(full.saturating_sub(base)) / (steps - 1) as f64);
        bases.push(ms(base));
        fulls.push(ms(full));
    }
    let (step, low, high) = spread(per_step);
    println!(
        "chain of {steps} no-I/O steps: {:.0} ms (1 step: {:.0} ms) => {step:.3} ms per step (rounds: {low:.3} to {high:.3})",
        spread(fulls).0,
        spread(bases).0,
    );

    let url = format!("http://{}", serve_ok());
    // The direct requests in a process of their own, timed from its start to its end like an
    // `orchc run`; gives that time and the requests' own time, measured inside the process.
    let direct_process = || {
        let started = Instant::now();
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["direct", &url, &requests.to_string()])
            .output()
            .unwrap();
        let took = started.elapsed();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let inside: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("the direct requests' time");
        (took, Duration::from_nanos(inside))
    };
    let for_src = format!(
        "config api: Str = \"{url}\"\nstep fetch(i: Int) -> (ok: Bool) {{\n  let r = http.get(\"${{api}}/item/${{i}}\")\n  {{ ok: r.json.ok as Bool }}\n}}\nworkflow fan_out(n: Int = {requests}) -> (ok: [Bool]) {{\n  for i in range(n) limit {CONCURRENCY} {{ fetch }}\n}}\n"
    );
    let for_file = dir.path().join("for.orch");
    std::fs::write(&for_file, for_src).unwrap();
    // The same run with the store in memory-backed /dev/shm: what is left without the fsyncs,
    // to tell the cost of durability from the interpreter's own.
    let shm = std::path::Path::new("/dev/shm").is_dir().then(|| tempfile::tempdir_in("/dev/shm").unwrap());
    let (mut directs, mut insides, mut vias, mut shms) = (vec![], vec![], vec![], vec![]);
    let (mut ratios, mut inside_ratios, mut shm_ratios) = (vec![], vec![], vec![]);
    for round in 0..rounds {
        let (d, inside) = direct_process();
        let via = time_run(&bin, &for_file, dir.path(), round);
        directs.push(ms(d));
        insides.push(ms(inside));
        vias.push(ms(via));
        ratios.push(via.as_secs_f64() / d.as_secs_f64());
        inside_ratios.push(via.as_secs_f64() / inside.as_secs_f64());
        if let Some(shm) = &shm {
            let via_shm = time_run(&bin, &for_file, shm.path(), round);
            shms.push(ms(via_shm));
            shm_ratios.push(via_shm.as_secs_f64() / d.as_secs_f64());
        }
    }
    let (ratio, low, high) = spread(ratios);
    println!(
        "{requests} GETs, {CONCURRENCY} at a time, each side a process: direct {:.0} ms, orchc for {:.0} ms => {ratio:.2}x (rounds: {low:.2}x to {high:.2}x)",
        spread(directs).0,
        spread(vias).0,
    );
    let (ratio, low, high) = spread(inside_ratios);
    println!(
        "  against the direct requests' time inside their process ({:.0} ms): {ratio:.2}x (rounds: {low:.2}x to {high:.2}x)",
        spread(insides).0,
    );
    if shm.is_some() {
        let (ratio, low, high) = spread(shm_ratios);
        println!(
            "  the same with the store on tmpfs (no fsync cost): orchc for {:.0} ms => {ratio:.2}x (rounds: {low:.2}x to {high:.2}x)",
            spread(shms).0,
        );
    }
}

/// `requests` GETs to `url`, `CONCURRENCY` at a time, with a new client (its connections are made
/// within the time, as `orchc` makes its own in each run) and tokio's default runtime, as a
/// program written for the job would make them. Gives their time.
fn direct(url: &str, requests: usize) -> Duration {
    use futures::StreamExt;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();
    let started = Instant::now();
    let bodies = rt.block_on(async {
        let urls: Vec<String> = (0..requests).map(|i| format!("{url}/item/{i}")).collect();
        futures::stream::iter(urls)
            .map(|u| {
                let c = client.clone();
                async move { c.get(&u).send().await.unwrap().text().await.unwrap() }
            })
            .buffered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await
    });
    let took = started.elapsed();
    assert!(bodies.iter().all(|b| b.contains("\"ok\": true")), "every direct request gets the server's reply");
    took
}

/// A minimal HTTP/1.1 server on 127.0.0.1 (keep-alive, one fixed JSON reply) on its own runtime
/// thread, so that neither side of the comparison is held back by the server. Returns its address.
fn serve_ok() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { continue };
                tokio::spawn(async move {
                    let body = "{\"ok\": true}";
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        // One reply per request head (GETs have no body).
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            if sock.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
    });
    addr
}
