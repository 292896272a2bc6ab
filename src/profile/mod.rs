//! The inventory: parsed newtypes (`Hostname`, `Ipv4Cidr`, `MacAddr`,
//! `SshPublicKey`, …), the serde schema of `homelab.yaml`, `load` (file →
//! `Profile`, errors with file:line:column), `resolve` (defaults merged,
//! files and secrets read, every rule checked, all problems reported at
//! once) and the state directory that holds generated secrets.
//!
//! Pipeline: `load(path)` → `resolve(&profile, &ctx)` → `Cluster` →
//! `State::prepare` → `render::node`.

pub mod check_json;
pub mod firmware;
pub mod hint;
pub mod hostname;
pub mod ident;
pub mod inventory;
pub mod k3s;
pub mod k3s_rules;
pub mod known_names;
pub mod load;
pub mod locate;
pub mod named_file;
pub mod net;
pub mod netboot;
pub(crate) mod newtype;
pub mod password;
pub mod platform;
pub mod problem;
pub mod resolve;
pub mod resolved;
pub mod salvage;
pub mod ssh;
pub mod starter;
pub mod starter_ask;
pub mod status_url;
pub mod tracked;
pub mod tree;
pub mod uid;

pub mod state;
pub mod validate;
pub mod vm;

pub use hostname::{DomainName, Hostname};
pub use inventory::Profile;
pub use load::{LoadError, load};
pub use net::{InterfaceName, Ipv4Cidr, MacAddr};
pub use problem::{Problem, Report};
pub use resolve::{Context, Resolved, resolve};
pub use resolved::{Cluster, ResolvedNode};
pub use ssh::SshPublicKey;
pub use state::State;
