//! The MHA passes, one per file, in pipeline order ([`super::pipeline::MHA_PASSES`]).

pub mod allocate_buffers;
pub mod brgemm_blocking;
pub mod fuse_transpose_brgemm;
pub mod insert_buffers;
pub mod matmul_to_brgemm;
pub mod move_scale_to_scores;
pub mod softmax_decomposition;
