//! The Livepatch on-prem server. Work in progress: see issue 3.
