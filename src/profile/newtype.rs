//! The one way a parsed newtype meets serde: it is read from a YAML string
//! through its own `parse` (so a bad value fails at load time with the
//! file's line and column) and written back as its canonical string.

/// Implements `Serialize`, `Deserialize` and `FromStr` for a newtype that
/// has `parse(&str) -> Result<Self, E>` and `Display`.
macro_rules! string_serde {
    ($ty:ty, $parse:path) => {
        impl ::serde::Serialize for $ty {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $ty {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <String as ::serde::Deserialize>::deserialize(d)?;
                $parse(&raw).map_err(::serde::de::Error::custom)
            }
        }

        impl ::std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $parse(s).map_err(|e| e.to_string())
            }
        }
    };
}

pub(crate) use string_serde;
