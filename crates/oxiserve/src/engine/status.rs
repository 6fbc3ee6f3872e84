//! The engine seen by the routes that do not run the pipeline (health, the model list, KServe
//! v2 on the raw models), over HTTP and gRPC alike: [`ServiceStatus`], free of the pipeline's
//! types.

use std::sync::Arc;

use super::Engine;
use crate::model::{ModelStatus, Models};
use crate::pipeline::Pipeline;

/// What the status routes of every transport need to know, without the pipeline's types.
pub(crate) trait ServiceStatus: Send + Sync {
    /// Whether the service takes predictions.
    fn is_ready(&self) -> bool;
    /// Whether shutdown has begun (predictions are still served).
    fn is_draining(&self) -> bool;
    /// Every model with its state.
    fn models(&self) -> Vec<ModelStatus>;
    /// The models themselves, for the routes that run them directly (KServe v2).
    fn registry(&self) -> &Models;
}

impl<P: Pipeline> ServiceStatus for Engine<P> {
    fn is_ready(&self) -> bool {
        Engine::is_ready(self)
    }

    fn is_draining(&self) -> bool {
        Engine::is_draining(self)
    }

    fn models(&self) -> Vec<ModelStatus> {
        Engine::models(self).statuses()
    }

    fn registry(&self) -> &Models {
        Engine::models(self)
    }
}

/// An engine seen through its status, as the transports share it.
pub(crate) type StatusState = Arc<dyn ServiceStatus>;
