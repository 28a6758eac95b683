//! Implementations of the ports: the embedded store and the local keyring
//! for one box; DynamoDB and KMS on AWS.

pub mod aws;
pub mod dynamodb;
pub mod embedded;
pub mod kms;
pub mod local_keyring;
