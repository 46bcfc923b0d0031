//! A node out of file descriptors keeps its head (issue 19): it does not
//! spin on `accept` or flood its log, a client it cannot take sees its
//! connection closed rather than hanging, and once descriptors free up it
//! serves again.

use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cell0_tests::{cell0_bin, free_addr, run_cell0};

/// CPU time (user + system) of process `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the node runs");
    let after = stat.rsplit_once(')').expect("a stat line").1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `after` starts at
    // field 3.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn out_of_descriptors_the_node_sheds_connections_without_spinning() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log_path = dir.path().join("node.log");
    let addr = free_addr();
    let bin = cell0_bin();
    // The hard limit is lowered too, so the node cannot raise it away.
    let script = format!(
        "ulimit -Sn 64 && ulimit -Hn 64 && exec {} serve --listen {addr} --data {} --no-runner",
        bin.display(),
        data.display()
    );
    let log = std::fs::File::create(&log_path).unwrap();
    let mut node = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("sh runs");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .contains("serving 9P")
    {
        assert!(
            node.try_wait().unwrap().is_none(),
            "the node exited:\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "the node did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // More connections than the node has descriptors for.
    let conns: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(&addr).expect("the kernel queues the connection"))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let pid = node.id();
    let (cpu0, t0) = (cpu_ticks(pid), Instant::now());
    let size0 = std::fs::metadata(&log_path).unwrap().len();
    std::thread::sleep(Duration::from_secs(3));
    let cpu = cpu_ticks(pid) - cpu0;
    let ticks = t0.elapsed().as_secs_f64() * 100.0;
    let grown = std::fs::metadata(&log_path).unwrap().len() - size0;
    let text = std::fs::read_to_string(&log_path).unwrap();
    // A node spinning on accept burns a whole core and writes about a
    // million lines a second; this one waits for work.
    assert!(
        (cpu as f64) < ticks * 0.5,
        "the node used {cpu} ticks of CPU in {ticks:.0} while out of descriptors"
    );
    assert!(
        grown < 16 * 1024,
        "the node's log grew by {grown} bytes in 3 s out of descriptors"
    );
    assert!(
        text.contains("out of file descriptors (limit 64)"),
        "the node says why it closes connections:\n{text}"
    );
    // Those it could not take are closed, not left hanging.
    let closed = conns
        .iter()
        .filter(|c| {
            let mut c = *c;
            c.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            match c.read(&mut [0u8; 16]) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            }
        })
        .count();
    assert!(closed > 0, "no connection was closed by the node");

    // Descriptors back: it serves again.
    drop(conns);
    let data_arg = data.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, out, err) = run_cell0(&["cat", "/status", "--addr", &addr, "--data", &data_arg]);
        if ok {
            assert!(out.contains("node"), "{out}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node serves no one after descriptors came back: {err}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = node.kill();
    let _ = node.wait();
}
