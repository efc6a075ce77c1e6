//! Harness for edgerec's end-to-end tests: the real `origin` binary, the real
//! worker under `wrangler dev` (workerd), and a fault-injecting proxy to put
//! between them. Everything listens on loopback ports chosen at run time and
//! is killed when dropped.

pub mod chaos;
pub mod fault_proxy;
pub mod ingest;
pub mod load;
pub mod measure;
pub mod monitoring;
pub mod nginx;
pub mod platform;
pub mod procs;
pub mod quality;
pub mod rollout;

pub use fault_proxy::{Fault, FaultProxy};
pub use procs::{Edge, Origin, repo};
