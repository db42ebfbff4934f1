//! Which collector an agent ships to when it is given several: rendezvous (highest random
//! weight) hashing of the agent id against each collector's address. Every agent ranks the
//! collectors by a hash of (agent id, collector) and uses the first one that answers, so that
//! removing one of N collectors moves only its own agents (about 1/N of the fleet, spread over
//! the others) and they come back when it returns. Shared by nfm-agent and nfm-sim so that
//! simulated and real fleets split the same way; pure arithmetic, the same on every host and
//! version.

use std::net::SocketAddr;

/// FNV-1a over `bytes`, continuing from `h`.
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// splitmix64's finalizer: FNV-1a's low bits are poorly mixed for short inputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}

/// The weight of `collector` for `agent_id` (its address as written, e.g. `10.0.0.5:7700`).
pub fn weight(agent_id: u64, collector: &SocketAddr) -> u64 {
    let h = fnv1a(0xcbf29ce484222325, &agent_id.to_le_bytes());
    mix(fnv1a(h, collector.to_string().as_bytes()))
}

/// Indices of `collectors` in the order `agent_id` tries them: highest weight first (ties, only
/// for repeated addresses, by position).
pub fn rank(agent_id: u64, collectors: &[SocketAddr]) -> Vec<usize> {
    let mut order: Vec<(u64, usize)> = collectors
        .iter()
        .enumerate()
        .map(|(i, c)| (weight(agent_id, c), i))
        .collect();
    order.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    order.into_iter().map(|(_, i)| i).collect()
}

/// The collector `agent_id` prefers (None for an empty list).
pub fn pick(agent_id: u64, collectors: &[SocketAddr]) -> Option<usize> {
    collectors
        .iter()
        .enumerate()
        .max_by(|a, b| {
            weight(agent_id, a.1)
                .cmp(&weight(agent_id, b.1))
                .then(b.0.cmp(&a.0))
        })
        .map(|(i, _)| i)
}

#[cfg(test)]
mod test {
    use super::*;

    fn addrs(n: usize) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| {
                format!("10.0.{}.{}:7700", i / 200, i % 200 + 1)
                    .parse()
                    .unwrap()
            })
            .collect()
    }

    /// Agents spread evenly: with 4 collectors and 40,000 agents each gets 25 % ± 2 %.
    #[test]
    fn test_balanced() {
        let c = addrs(4);
        let mut n = [0usize; 4];
        for a in 0..40_000u64 {
            n[pick(a, &c).unwrap()] += 1;
        }
        for k in n {
            assert!((9_200..=10_800).contains(&k), "{n:?}");
        }
    }

    /// Removing one of N collectors moves exactly its agents (each to its second choice), and
    /// no other; adding it back returns exactly them. About 1/N of the fleet moves.
    #[test]
    fn test_removing_one_moves_only_its_agents() {
        for n in [2usize, 3, 5, 8] {
            let all = addrs(n);
            for gone in 0..n {
                let rest: Vec<SocketAddr> = all
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != gone)
                    .map(|(_, a)| *a)
                    .collect();
                let mut moved = 0;
                let agents = 20_000u64;
                for a in 0..agents {
                    let before = all[pick(a, &all).unwrap()];
                    let after = rest[pick(a, &rest).unwrap()];
                    if before != all[gone] {
                        assert_eq!(before, after, "agent {a} moved though its collector stayed");
                    } else {
                        moved += 1;
                        // Its second choice on the full list.
                        assert_eq!(after, all[rank(a, &all)[1]]);
                    }
                }
                let share = moved as f64 / agents as f64;
                let want = 1.0 / n as f64;
                assert!(
                    (share - want).abs() < 0.02,
                    "n={n}: {share} moved, want {want}"
                );
            }
        }
    }

    /// The same on every call and in any list order; `rank` starts with `pick`.
    #[test]
    fn test_stable_and_order_free() {
        let c = addrs(5);
        let mut rev = c.clone();
        rev.reverse();
        for a in 0..1000u64 {
            let r = rank(a, &c);
            assert_eq!(r[0], pick(a, &c).unwrap());
            assert_eq!(c[r[0]], rev[pick(a, &rev).unwrap()]);
            let mut s = r.clone();
            s.sort();
            assert_eq!(s, vec![0, 1, 2, 3, 4]);
        }
        assert_eq!(pick(1, &[]), None);
        assert!(rank(1, &[]).is_empty());
        // A fixed value: the choice must not change between versions or hosts.
        assert_eq!(
            weight(42, &"127.0.0.1:7700".parse().unwrap()),
            0x17d51adf787026d3
        );
    }
}
