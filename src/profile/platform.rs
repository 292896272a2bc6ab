//! What a node runs on: its `Board` (Raspberry Pi 4/5 or an Armbian board)
//! and the `OsRelease` of its base image. Behaviour that differs between
//! them is decided in `render::quirks`, not here.

use std::fmt;

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "{0:?} is not a board: use rpi4, rpi5 or an Armbian board name \
     (lower-case, like rock-5b or orangepi5)"
)]
pub struct BoardError(String);

/// The single-board computer a node image is built for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Board {
    RaspberryPi4,
    RaspberryPi5,
    /// An Armbian board name as used in Armbian's download paths.
    Armbian(String),
    /// A virtual machine booting an Ubuntu cloud image (`board: vm`, with
    /// `arch` and a `vm:` section).
    Vm,
}

impl Board {
    pub fn parse(s: &str) -> Result<Self, BoardError> {
        match s {
            // Armbian calls the Pi 4 "rpi4b"; it is the same board.
            "rpi4" | "rpi4b" => Ok(Self::RaspberryPi4),
            "rpi5" => Ok(Self::RaspberryPi5),
            "vm" => Ok(Self::Vm),
            _ => {
                let ok = !s.is_empty()
                    && s.len() <= 40
                    && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
                if ok {
                    Ok(Self::Armbian(s.to_owned()))
                } else {
                    Err(BoardError(s.to_owned()))
                }
            }
        }
    }

    /// Raspberry Pi firmware boards read `cmdline.txt` from the boot FAT.
    pub fn is_raspberry_pi(&self) -> bool {
        matches!(self, Self::RaspberryPi4 | Self::RaspberryPi5)
    }

    /// A virtual machine (`board: vm`).
    pub fn is_vm(&self) -> bool {
        matches!(self, Self::Vm)
    }
}

impl fmt::Display for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RaspberryPi4 => f.write_str("rpi4"),
            Self::RaspberryPi5 => f.write_str("rpi5"),
            Self::Armbian(name) => f.write_str(name),
            Self::Vm => f.write_str("vm"),
        }
    }
}

crate::profile::newtype::string_serde!(Board, Board::parse);

/// A node's CPU architecture (`arch`): every board is arm64; a VM may be
/// either.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Amd64,
    #[default]
    Arm64,
}

impl Arch {
    /// Debian's (and Ubuntu's) name, as in image and package file names.
    pub fn name(self) -> &'static str {
        match self {
            Self::Amd64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The distribution and release of a node's base image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OsRelease {
    #[serde(rename = "ubuntu-22.04")]
    Ubuntu2204,
    #[serde(rename = "ubuntu-24.04")]
    Ubuntu2404,
    /// 26.04 moved the Pi boot assets into an A/B layout (`current/`).
    #[serde(rename = "ubuntu-26.04")]
    Ubuntu2604,
    /// Armbian (Ubuntu- or Debian-based userland; no cloud-init).
    #[serde(rename = "armbian")]
    Armbian,
}

impl fmt::Display for OsRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ubuntu2204 => "ubuntu-22.04",
            Self::Ubuntu2404 => "ubuntu-24.04",
            Self::Ubuntu2604 => "ubuntu-26.04",
            Self::Armbian => "armbian",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boards_parse() {
        assert_eq!(Board::parse("rpi4").unwrap(), Board::RaspberryPi4);
        assert_eq!(
            Board::parse("rock-5b").unwrap(),
            Board::Armbian("rock-5b".into())
        );
        assert!(Board::parse("Rock 5B").is_err());
        assert_eq!(Board::parse("rpi4b").unwrap(), Board::RaspberryPi4);
        assert!(!Board::parse("rock-5b").unwrap().is_raspberry_pi());
        assert!(Board::parse("vm").unwrap().is_vm());
        assert_eq!(Board::Vm.to_string(), "vm");
    }
}
