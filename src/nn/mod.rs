//! The network: its architecture, parameters, layers and the forward and
//! backward passes that compose them.

pub mod activation;
pub mod arch;
pub mod dense;
pub mod dropout;
pub mod l2;
pub mod network;
pub mod params;
pub mod softmax_ce;

pub use arch::{Activation, Arch, Branch};
pub use network::{Input, Network, Workspace};
pub use params::{InitScheme, Layout, ParamTensor};
