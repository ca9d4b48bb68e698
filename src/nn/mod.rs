//! The network: its architecture, parameters, layers and the forward and
//! backward passes that compose them.

pub mod activation;
pub mod arch;
pub mod dense;
pub mod dropout;
pub mod first_layer;
pub mod l2;
pub mod network;
pub mod param_buffer;
pub mod params;
pub mod softmax_ce;

pub use arch::{Activation, Arch, Branch};
pub use dropout::{Dropout, DropoutMode};
pub use first_layer::{Input, InputKind};
pub use network::{Network, Workspace};
pub use param_buffer::Params;
pub use params::{InitScheme, Layout, ParamTensor};
