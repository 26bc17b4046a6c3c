//! The handler interface: an async function from a job to an outcome.

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::context::JobContext;
use crate::middleware::HandlerService;
use crate::outcome::{HandlerError, Outcome};

/// What a handler returns.
pub type HandlerResult = Result<Outcome, HandlerError>;

/// Runs jobs. Implement it for a type, wrap an async closure with [`handler_fn`], or run a
/// `tower::Service` with [`service_handler`](crate::service_handler).
pub trait Handler: Send + Sync + 'static {
    /// Runs one attempt of a job.
    fn call(&self, job: JobContext) -> BoxFuture<'static, HandlerResult>;

    /// This handler as a `tower::Service`, to wrap in tower middleware (a `ServiceBuilder`)
    /// and turn back into a handler with [`service_handler`](crate::service_handler).
    ///
    /// ```
    /// use jobfleet_worker::{Handler, JobContext, Outcome, handler_fn, service_handler};
    ///
    /// let handler = handler_fn(|_job: JobContext| async { Ok(Outcome::Done) });
    /// let limited = service_handler(
    ///     tower::ServiceBuilder::new()
    ///         .concurrency_limit(2)
    ///         .service(handler.into_service()),
    /// );
    /// # fn is_handler(_: impl Handler) {}
    /// # is_handler(limited);
    /// ```
    fn into_service(self) -> HandlerService<Self>
    where
        Self: Sized,
    {
        HandlerService::new(self)
    }
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
