//! The handler interface: an async function from a job to an outcome.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::context::JobContext;
use crate::outcome::{HandlerError, Outcome};

/// What a handler returns.
pub type HandlerResult = Result<Outcome, HandlerError>;

/// Runs jobs. Implement it for a type, or wrap an async closure with [`handler_fn`].
pub trait Handler: Send + Sync + 'static {
    /// Runs one attempt of a job.
    fn call(&self, job: JobContext) -> BoxFuture<'static, HandlerResult>;
}

impl<H: Handler + ?Sized> Handler for Arc<H> {
    fn call(&self, job: JobContext) -> BoxFuture<'static, HandlerResult> {
        (**self).call(job)
    }
}

/// A [`Handler`] made from an async closure; see [`handler_fn`].
#[derive(Debug, Clone)]
pub struct HandlerFn<F>(F);

/// Wraps an async closure as a [`Handler`].
///
/// ```
/// use jobfleet_worker::{handler_fn, JobContext, Outcome};
///
/// #[derive(serde::Deserialize)]
/// struct Email { to: String }
///
/// let handler = handler_fn(|job: JobContext| async move {
///     let email: Email = job.json()?;
///     println!("sending to {}", email.to);
///     Ok(Outcome::Done)
/// });
/// ```
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    HandlerFn(f)
}

impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HandlerResult> + Send + 'static,
{
    fn call(&self, job: JobContext) -> BoxFuture<'static, HandlerResult> {
        Box::pin((self.0)(job))
    }
}
