//! nfm-collector: turns flow deltas from many agents into answers. Skeleton: its issue builds
//! the actors; `model` is the vocabulary they and the simulator share.

pub mod model;
