//! The ports `serve` listens on: the protocols' own by default, all moved
//! by `--port-base N` (N + 67, N + 69, N + 10809, N + 80) so tests and
//! unprivileged runs can use high ports.

/// ProxyDHCP (BOOTP server port).
pub const DHCP: u16 = 67;
/// TFTP.
pub const TFTP: u16 = 69;
/// NBD (IANA).
pub const NBD: u16 = 10809;
/// HTTP status page and API.
pub const HTTP: u16 = 80;

/// The four ports with `base` added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub dhcp: u16,
    pub tftp: u16,
    pub nbd: u16,
    pub http: u16,
}

impl Ports {
    /// `None` when a port would pass 65535.
    pub fn with_base(base: u16) -> Option<Ports> {
        Some(Ports {
            dhcp: base.checked_add(DHCP)?,
            tftp: base.checked_add(TFTP)?,
            nbd: base.checked_add(NBD)?,
            http: base.checked_add(HTTP)?,
        })
    }
}
