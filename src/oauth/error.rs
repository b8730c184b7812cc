//! How the protocol layer fails. The HTTP layer maps each case to a status code
//! (`crate::http::error`); what a client or an operator is told about it is written here, once,
//! because keep-alive reports it too.

use thiserror::Error;

use crate::{
    base::{record::DecodeError, secret::Fault, store::StoreError},
    oauth::provider::ProviderError,
};

#[derive(Debug, Error)]
pub enum FlowError {
    /// Only a person logging in through the provider again can mend the connection.
    #[error("re-authorization required")]
    ReauthorizationRequired { reason: String },
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    StoreUnreadable(#[from] DecodeError),
    #[error("another caller's refresh did not finish in time")]
    RefreshBusy,
    /// A bug or an environment failure; the detail goes to the log, not to the client.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl From<Fault> for FlowError {
    fn from(Fault(what): Fault) -> Self {
        Self::Internal(what)
    }
}

impl FlowError {
    /// What the client is told (`error_description`), and what keep-alive reports. Never a
    /// secret: provider texts are the provider's own error descriptions.
    pub fn description(&self) -> String {
        match self {
            Self::ReauthorizationRequired { reason } => {
                format!("a person must log in again through the provider ({reason})")
            }
            Self::Provider(ProviderError::Refused { description, .. }) => description
                .clone()
                .unwrap_or_else(|| "the provider refused the request".to_owned()),
            Self::Provider(ProviderError::Unavailable { outage, .. }) => {
                format!("the provider's token endpoint is unavailable ({outage}); stored tokens are kept")
            }
            Self::Provider(ProviderError::Malformed { detail, .. }) => format!("{detail}; stored tokens are kept"),
            Self::Store(StoreError::Unavailable(_)) => "the token store is unreachable; try again shortly".to_owned(),
            Self::Store(StoreError::Protocol(_)) => "the token store answered unexpectedly".to_owned(),
            Self::StoreUnreadable(_) => "the stored record cannot be read; it has been left as it is".to_owned(),
            Self::RefreshBusy => "another caller is refreshing the token; try again shortly".to_owned(),
            Self::Internal(_) => "the broker failed unexpectedly; see its logs".to_owned(),
        }
    }
}
