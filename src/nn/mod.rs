//! The network: its architecture, parameters, layers and the forward and
//! backward passes that compose them.

pub mod activation;
pub mod arch;
pub mod dense;
pub mod dropout;
pub mod first_layer;
pub mod l2;
pub mod layout;
pub mod network;
pub mod params;
pub mod softmax_ce;

pub use arch::{Activation, Arch, Branch};
pub use dropout::{Dropout, DropoutMode};
pub use first_layer::{
    Arithmetic, CompressedBatch, Images, Input, InputKind, Precision, Role, TrainInput, WholeBatch,
};
pub use layout::{InitScheme, Layout, ParamTensor};
pub use network::{Network, Score, Workspace};
pub use params::Params;
