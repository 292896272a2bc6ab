//! How a Raspberry Pi 4/5 EEPROM bootloader names itself in its DHCP
//! request, and the PXE answer it waits for (targets.md §4.1).
//!
//! Option 97 (RFC 4578 client machine identifier) is 17 bytes: type 0, then
//! a 16-byte GUID that the bootloader fills with four 32-bit words
//! (`eeprom-bootloader.adoc`, DHCP_OPTION97):
//!
//! | bytes  | content                                   | byte order          |
//! |--------|-------------------------------------------|---------------------|
//! | 1..5   | FourCC `RPi4` (0x34695052) / `RPi5`       | little-endian word  |
//! | 5..9   | board revision, e.g. 0x00c03111           | little-endian word  |
//! | 9..13  | the MAC address's last 4 bytes            | as on the wire      |
//! | 13..17 | the serial's low 32 bits                  | little-endian word  |
//!
//! The byte orders come from a dnsmasq log of a real Pi 4 (serial 5b154510,
//! MAC ..:32:2e:f8:ed) that shows `00:52:50:69:34:11:31:a0:00:32:2e:f8:ed:10…`:
//! FourCC and revision 0x00a03111 little-endian, the MAC as sent, and the
//! serial starting with its low byte 0x10; cmprovision's dnsmasq config
//! matches `97,0:52:50:69:34` the same way. Before 2020 the GUID was the
//! serial repeated four times (and `DHCP_OPTION97=0` brings that back);
//! that form is read too. A custom `DHCP_OPTION97` prefix cannot be
//! recognised: such a Pi is found by its MAC.

use crate::profile::netboot::PiSerial;

/// Which bootloader sent a GUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    Pi4,
    Pi5,
    /// The pre-2020 form (serial repeated), which carries no model.
    Legacy,
}

/// What option 97 of a Pi's request says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PiGuid {
    pub model: Model,
    /// The board revision code (0 in the legacy form).
    pub board_rev: u32,
    pub serial: PiSerial,
}

const FOURCC_PI4: [u8; 4] = *b"RPi4";
const FOURCC_PI5: [u8; 4] = *b"RPi5";
/// RFC 4578: type 0 then a 16-byte GUID.
pub const GUID_OPTION_LEN: usize = 17;

fn word(b: &[u8], at: usize) -> Option<[u8; 4]> {
    b.get(at..at + 4)?.try_into().ok()
}

/// Reads option 97's value, or None when it is no Pi GUID.
pub fn parse_guid(value: &[u8]) -> Option<PiGuid> {
    if value.len() != GUID_OPTION_LEN || value[0] != 0 {
        return None;
    }
    let (w0, w1, w2, w3) = (
        word(value, 1)?,
        word(value, 5)?,
        word(value, 9)?,
        word(value, 13)?,
    );
    let (model, board_rev, serial) = match w0 {
        FOURCC_PI4 => (Model::Pi4, u32::from_le_bytes(w1), w3),
        FOURCC_PI5 => (Model::Pi5, u32::from_le_bytes(w1), w3),
        // All zeros or ones is a placeholder GUID, not a serial.
        _ if w0 == w1 && w1 == w2 && w2 == w3 && w0 != [0; 4] && w0 != [0xff; 4] => {
            (Model::Legacy, 0, w0)
        }
        _ => return None,
    };
    // Eight hex digits always parse as a serial.
    let serial = PiSerial::parse(&format!("{:08x}", u32::from_le_bytes(serial))).ok()?;
    Some(PiGuid {
        model,
        board_rev,
        serial,
    })
}

/// The PXE menu item the bootloader matches (`PXE_OPTION43` default; newer
/// bootloaders match a substring, so the Pi 3B ROM's three trailing spaces
/// are not needed by a Pi 4/5).
pub const BOOT_MENU_TEXT: &[u8] = b"Raspberry Pi Boot";

/// Option 43 as dnsmasq's `pxe-service=0,"Raspberry Pi Boot"` writes it
/// (rfc2131.c `pxe_opts`, RPi docs boot-net.adoc): sub-option 6 (discovery
/// control) 3 = no multicast or broadcast discovery; 10 (menu prompt) =
/// timeout 0 and "PXE"; 9 (boot menu) = server type 0, the menu text; End.
/// No sub-option 8 (boot servers): the service names no server, so the
/// client takes the TFTP server from option 54.
pub fn pxe_vendor_options() -> Vec<u8> {
    let mut v = vec![6, 1, 3, 10, 4, 0, b'P', b'X', b'E', 9];
    // Both lengths are constants far below 255.
    v.push((BOOT_MENU_TEXT.len() + 3) as u8);
    v.extend_from_slice(&[0, 0, BOOT_MENU_TEXT.len() as u8]);
    v.extend_from_slice(BOOT_MENU_TEXT);
    v.push(255);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guid(words: [[u8; 4]; 4]) -> Vec<u8> {
        let mut v = vec![0];
        for w in words {
            v.extend_from_slice(&w);
        }
        v
    }

    #[test]
    fn a_pi4_guid_as_a_real_pi4_sent_it() {
        // The first 14 bytes are from the dnsmasq log in the module doc;
        // the serial 5b154510 is the TFTP prefix that same Pi asked for.
        let v = guid([
            *b"RPi4",
            [0x11, 0x31, 0xa0, 0x00],
            [0x32, 0x2e, 0xf8, 0xed],
            [0x10, 0x45, 0x15, 0x5b],
        ]);
        assert_eq!(&v[..5], &[0, 0x52, 0x50, 0x69, 0x34]);
        let g = parse_guid(&v).unwrap();
        assert_eq!(g.model, Model::Pi4);
        assert_eq!(g.board_rev, 0x00a0_3111);
        assert_eq!(g.serial.as_str(), "5b154510");
    }

    #[test]
    fn a_pi5_guid_and_the_legacy_form() {
        let v = guid([
            *b"RPi5",
            0x00d0_4170u32.to_le_bytes(),
            [1, 2, 3, 4],
            0xabcd_1234u32.to_le_bytes(),
        ]);
        let g = parse_guid(&v).unwrap();
        assert_eq!((g.model, g.board_rev), (Model::Pi5, 0x00d0_4170));
        assert_eq!(g.serial.as_str(), "abcd1234");
        let s = 0x9ffe_fdefu32.to_le_bytes();
        let g = parse_guid(&guid([s, s, s, s])).unwrap();
        assert_eq!((g.model, g.serial.as_str()), (Model::Legacy, "9ffefdef"));
    }

    #[test]
    fn other_guids_are_no_pi() {
        assert_eq!(parse_guid(&guid([*b"PXE!", [1; 4], [2; 4], [3; 4]])), None);
        let mut v = guid([*b"RPi4", [1; 4], [2; 4], [3; 4]]);
        v[0] = 1;
        assert_eq!(parse_guid(&v), None, "type must be 0");
        assert_eq!(parse_guid(&v[..16]), None, "too short");
        assert_eq!(parse_guid(&[]), None);
        assert_eq!(parse_guid(&[0; 17]), None, "a placeholder GUID");
    }

    #[test]
    fn option_43_is_the_documented_menu() {
        // Raspberry Pi docs, boot-net.adoc: the option 43 a Pi boots from.
        let mut want = vec![6, 1, 3, 10, 4, 0, 80, 88, 69, 9, 20, 0, 0, 17];
        want.extend_from_slice(b"Raspberry Pi Boot");
        want.push(255);
        assert_eq!(pxe_vendor_options(), want);
        assert_eq!(want.len(), 32);
    }
}
