//! The one error type of otc-ui.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum UiError {
    #[error("display {path}: {source}")]
    DisplayIo {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("touch device {path}: {source}")]
    TouchIo {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no touch device found: {0}")]
    NoTouchDevice(String),
    #[error("unsupported display: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Other(String),
}
