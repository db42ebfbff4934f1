//! Kernel constants the program and the agent share: `bpf_sock_ops` op codes and callback
//! flags, TCP states, address families, and the TCP phase of a state (uapi values, not ours).

/// `bpf_sock_ops.op` values used by the program (`include/uapi/linux/bpf.h`).
pub mod op {
    pub const TCP_CONNECT_CB: u32 = 3;
    pub const ACTIVE_ESTABLISHED_CB: u32 = 4;
    pub const PASSIVE_ESTABLISHED_CB: u32 = 5;
    pub const RTO_CB: u32 = 8;
    pub const RETRANS_CB: u32 = 9;
    pub const STATE_CB: u32 = 10;
    pub const RTT_CB: u32 = 12;
    /// A segment arrived on an established (or closing) socket
    /// (`BPF_SOCK_OPS_PARSE_HDR_OPT_CB`, with [`cb_flag::RX`](super::cb_flag::RX)).
    pub const PARSE_HDR_OPT_CB: u32 = 13;
}

/// `bpf_sock_ops_cb_flags_set` flags.
pub mod cb_flag {
    pub const RTO: u32 = 1 << 0;
    pub const RETRANS: u32 = 1 << 1;
    pub const STATE: u32 = 1 << 2;
    pub const RTT: u32 = 1 << 3;
    /// Every segment received (BPF_SOCK_OPS_PARSE_ALL_HDR_OPT_CB_FLAG): the only callback a
    /// pure receiver gets while it lives. The program refreshes the socket's live counters from
    /// it once per [`RX_REFRESH_SHIFT`](super::RX_REFRESH_SHIFT) of bytes and turns it off when
    /// the peer's FIN arrives.
    pub const RX: u32 = 1 << 4;
    /// What the program enables on every tracked socket unless the loader overrides it.
    pub const DEFAULT: u32 = RTO | RETRANS | STATE | RTT | RX;
    /// Marker, not a callback we use: "this socket's map entry holds counts its events do not"
    /// (a retransmission, a timeout, or an entry inserted because the ring buffer was full). Lets
    /// the close skip the hash lookup for the common short connection. The kernel calls the
    /// program for it only on segments carrying TCP options it does not know (rare; ignored).
    /// (BPF_SOCK_OPS_PARSE_UNKNOWN_HDR_OPT_CB_FLAG.)
    pub const MARK: u32 = 1 << 5;
}

/// TCP states (`include/net/tcp_states.h`).
pub mod tcp_state {
    pub const ESTABLISHED: u32 = 1;
    pub const SYN_SENT: u32 = 2;
    pub const SYN_RECV: u32 = 3;
    pub const FIN_WAIT1: u32 = 4;
    pub const FIN_WAIT2: u32 = 5;
    pub const TIME_WAIT: u32 = 6;
    pub const CLOSE: u32 = 7;
    pub const CLOSE_WAIT: u32 = 8;
    pub const LAST_ACK: u32 = 9;
    pub const LISTEN: u32 = 10;
    pub const CLOSING: u32 = 11;
    pub const NEW_SYN_RECV: u32 = 12;
}

/// TCP header flags (`skb_tcp_flags`).
pub mod tcp_flag {
    pub const FIN: u32 = 0x01;
    pub const RST: u32 = 0x04;
}

/// Address families as the kernel reports them.
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// Phase indexes into [`SockStats::retrans`] and [`SockStats::rto`].
pub mod phase {
    /// Before the connection is established (SYN / SYN-ACK).
    pub const HANDSHAKE: usize = 0;
    pub const ESTABLISHED: usize = 1;
    /// After a FIN was sent or received.
    pub const CLOSING: usize = 2;
}

/// The phase a TCP state belongs to.
#[inline(always)]
pub fn phase_of(state: u32) -> usize {
    match state {
        tcp_state::ESTABLISHED => phase::ESTABLISHED,
        tcp_state::SYN_SENT | tcp_state::SYN_RECV | tcp_state::NEW_SYN_RECV => phase::HANDSHAKE,
        _ => phase::CLOSING,
    }
}
