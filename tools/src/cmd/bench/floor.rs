//! The floor under every figure: a bare TCP echo on loopback, so a reader
//! can tell the server's share of a round trip from the machine's.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use super::workload::percentile_us;

/// Round trips the echo makes.
const ROUNDS: usize = 20_000;

/// p50 and p99 in µs of a 23-byte message sent to a thread that writes it
/// straight back, with Nagle off on both ends.
pub fn echo_round_trip() -> anyhow::Result<(f64, f64)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 64];
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            s.write_all(&buf[..n])?;
        }
    });
    let mut c = TcpStream::connect(addr)?;
    c.set_nodelay(true)?;
    // The size of a Tclunk and an Rread of a short file, near enough.
    let msg = [7u8; 23];
    let mut back = [0u8; 23];
    let mut lat = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        c.write_all(&msg)?;
        c.read_exact(&mut back)?;
        lat.push(t0.elapsed().as_nanos() as u64);
    }
    drop(c);
    echo.join()
        .map_err(|_| anyhow::anyhow!("the echo thread panicked"))??;
    lat.sort_unstable();
    Ok((percentile_us(&lat, 0.5), percentile_us(&lat, 0.99)))
}
