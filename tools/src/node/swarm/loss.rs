//! The transport's test hook for packet loss: `CELL0_GOSSIP_LOSS=P` drops
//! P percent of the datagrams the node sends (so, with every node set
//! alike, P percent of all datagrams are lost, as on a lossy network), so
//! a test (or `cell0 bench swarm --loss P`) can check that loss makes no
//! false deaths without touching the host's network.

/// Drops a fixed share of datagrams, at random.
#[derive(Debug, Clone)]
pub struct Loss {
    /// Parts per million dropped.
    ppm: u32,
    /// xorshift64 state.
    state: u64,
}

impl Loss {
    /// No loss.
    pub fn none() -> Loss {
        Loss { ppm: 0, state: 1 }
    }

    /// The loss `CELL0_GOSSIP_LOSS` asks for (a percentage, 0 to 100; a
    /// bad value is refused loudly rather than ignored).
    pub fn from_env(seed: u64) -> anyhow::Result<Loss> {
        let Ok(v) = std::env::var("CELL0_GOSSIP_LOSS") else {
            return Ok(Loss::none());
        };
        let pct: f64 = v
            .trim()
            .parse()
            .ok()
            .filter(|p: &f64| (0.0..=100.0).contains(p))
            .ok_or_else(|| {
                anyhow::anyhow!("CELL0_GOSSIP_LOSS=\"{v}\" is not a percentage from 0 to 100")
            })?;
        Ok(Loss {
            ppm: (pct * 10_000.0) as u32,
            state: seed | 1,
        })
    }

    /// Whether to drop the next datagram.
    pub fn drop_one(&mut self) -> bool {
        if self.ppm == 0 {
            return false;
        }
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        (x % 1_000_000) < u64::from(self.ppm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_about_the_share_asked() {
        let mut l = Loss {
            ppm: 100_000,
            state: 7,
        };
        let dropped = (0..100_000).filter(|_| l.drop_one()).count();
        assert!((9_000..11_000).contains(&dropped), "{dropped}");
        assert!(!Loss::none().drop_one());
    }
}
