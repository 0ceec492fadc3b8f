//! The built-in providers: which one a `Config` starts with, and all of them for tests and
//! benches that run the same checks on each.

use std::sync::Arc;

use super::CryptoProvider;

/// The provider a `Config` starts with: `aws_lc::AwsLc` when the crate is built with the
/// `aws-lc` feature, [`super::rustcrypto::RustCrypto`] otherwise.
pub fn default_provider() -> Arc<dyn CryptoProvider> {
    #[cfg(feature = "aws-lc")]
    {
        Arc::new(super::aws_lc::AwsLc)
    }
    #[cfg(not(feature = "aws-lc"))]
    {
        Arc::new(super::rustcrypto::RustCrypto)
    }
}

/// Every provider this build has, for tests and benches that run the same checks on each.
pub fn all_providers() -> Vec<Arc<dyn CryptoProvider>> {
    #[cfg_attr(not(feature = "aws-lc"), allow(unused_mut))]
    let mut all: Vec<Arc<dyn CryptoProvider>> = vec![Arc::new(super::rustcrypto::RustCrypto)];
    #[cfg(feature = "aws-lc")]
    all.push(Arc::new(super::aws_lc::AwsLc));
    all
}
