//! Handlers and tower services, both ways: a [`tower::Service`] of jobs runs as a
//! [`Handler`] ([`service_handler`]), and a handler is a `Service` ([`Handler::into_service`]),
//! so tower's middleware composes around handlers with a `ServiceBuilder`.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tower::{BoxError, Service, ServiceExt};

use crate::context::JobContext;
use crate::handler::{Handler, HandlerResult};
use crate::outcome::{HandlerError, Outcome};

/// Runs jobs with a [`tower::Service`]: the way to put tower middleware around a handler.
///
/// The service is cloned for every job, the clone is driven to readiness
/// ([`ServiceExt::ready`]) and then called, as tower expects of a shared service. Middleware
/// whose state is shared between clones (`ConcurrencyLimit`'s semaphore, `Buffer`) limits the
/// whole worker; middleware that is not `Clone` (`RateLimit`) goes behind a `Buffer`.
///
/// Errors convert with [`IntoHandlerError`]: a [`HandlerError`] or [`ServiceError`] is kept
/// as it is (a permanent one still dead-letters), tower's `Elapsed` becomes a retryable
/// `Timeout`, and any other boxed error a retryable error with its message.
///
/// The runtime's own layers stay outside the stack: the job's tracing span, its timeout, panic
/// capture and metrics wrap everything here, so time spent waiting for the service to be ready
/// counts toward the job's timeout and holds one of the worker's slots (the lease is kept
/// alive meanwhile).
///
/// ```text
///   runtime: span > timeout > panic capture > metrics > outcome -> ack
///     your ServiceBuilder layers, outermost first
///       your handler (a Service, or any Handler via `into_service`)
/// ```
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use jobfleet_worker::{Handler, JobContext, Outcome, handler_fn, service_handler};
/// use tower::ServiceBuilder;
///
/// let send_email = handler_fn(|job: JobContext| async move {
///     println!("sending {}", job.id());
///     Ok(Outcome::Done)
/// });
/// let handler = service_handler(
///     ServiceBuilder::new()
///         // Runs before the handler, in the job's span.
///         .map_request(|job: JobContext| {
///             tracing::debug!(attempt = job.attempt(), "email job");
///             job
///         })
///         // At most 4 emails at once, however many slots the worker has.
///         .concurrency_limit(4)
///         // Gives up after 10 s: a retryable `Timeout` error.
///         .timeout(Duration::from_secs(10))
///         .service(send_email.into_service()),
/// );
/// // Worker::builder(client, "emails").build(handler)
/// # fn is_handler(_: impl jobfleet_worker::Handler) {}
/// # is_handler(handler);
/// ```
pub fn service_handler<S>(service: S) -> ServiceHandler<S>
where
    S: Service<JobContext, Response = Outcome> + Clone + Send + 'static,
    S::Error: IntoHandlerError,
    S::Future: Send + 'static,
{
    ServiceHandler {
        service: Mutex::new(service),
    }
}

/// A [`tower::Service`] as a [`Handler`]; see [`service_handler`].
pub struct ServiceHandler<S> {
    // A mutex only to clone it from `&self`: services need not be `Sync`.
    service: Mutex<S>,
}

impl<S> ServiceHandler<S> {
    /// The service back.
    pub fn into_inner(self) -> S {
        self.service
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl<S> fmt::Debug for ServiceHandler<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceHandler").finish_non_exhaustive()
    }
}

impl<S> Handler for ServiceHandler<S>
where
    S: Service<JobContext, Response = Outcome> + Clone + Send + 'static,
    S::Error: IntoHandlerError,
    S::Future: Send + 'static,
{
    fn call(&self, job: JobContext) -> BoxFuture<'static, HandlerResult> {
        let mut service = self
            .service
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Box::pin(async move {
            service
                .ready()
                .await
                .map_err(IntoHandlerError::into_handler_error)?;
            service
                .call(job)
                .await
                .map_err(IntoHandlerError::into_handler_error)
        })
    }
}

/// A [`Handler`] as a [`tower::Service`], always ready; made by [`Handler::into_service`].
///
/// Its error is a [`ServiceError`], a `std::error::Error`, so middleware that boxes errors
/// (`Timeout`, `Buffer`, ...) accepts it, and [`service_handler`] recovers the handler's
/// [`HandlerError`] from it, permanence included.
pub struct HandlerService<H: ?Sized> {
    handler: Arc<H>,
}

impl<H: Handler> HandlerService<H> {
    /// Wraps `handler`.
    pub fn new(handler: H) -> Self {
        Self {
            handler: Arc::new(handler),
        }
    }
}

impl<H: Handler + ?Sized> HandlerService<H> {
    /// Wraps a shared handler.
    pub fn from_arc(handler: Arc<H>) -> Self {
        Self { handler }
    }
}

impl<H: ?Sized> Clone for HandlerService<H> {
    fn clone(&self) -> Self {
        Self {
            handler: Arc::clone(&self.handler),
        }
    }
}

impl<H: ?Sized> fmt::Debug for HandlerService<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerService").finish_non_exhaustive()
    }
}

impl<H: Handler + ?Sized> Service<JobContext> for HandlerService<H> {
    type Response = Outcome;
    type Error = ServiceError;
    type Future = HandlerServiceFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, job: JobContext) -> Self::Future {
        HandlerServiceFuture(self.handler.call(job))
    }
}

/// The future of [`HandlerService`].
pub struct HandlerServiceFuture(BoxFuture<'static, HandlerResult>);

impl Future for HandlerServiceFuture {
    type Output = Result<Outcome, ServiceError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx).map_err(ServiceError)
    }
}

impl fmt::Debug for HandlerServiceFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerServiceFuture")
            .finish_non_exhaustive()
    }
}

/// A [`HandlerError`] as a `std::error::Error`: the error of a [`HandlerService`].
#[derive(Debug)]
pub struct ServiceError(HandlerError);

impl ServiceError {
    /// The handler's error.
    pub fn handler_error(&self) -> &HandlerError {
        &self.0
    }

    /// The handler's error, owned.
    pub fn into_handler_error(self) -> HandlerError {
        self.0
    }
}

impl From<HandlerError> for ServiceError {
    fn from(err: HandlerError) -> Self {
        Self(err)
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl StdError for ServiceError {}

/// Errors a service run by [`service_handler`] may fail with. Implement it for your own
/// service error type to choose what is retried and what is dead-lettered.
pub trait IntoHandlerError {
    /// The handler error the runtime acts on.
    fn into_handler_error(self) -> HandlerError;
}

impl IntoHandlerError for HandlerError {
    fn into_handler_error(self) -> HandlerError {
        self
    }
}

impl IntoHandlerError for ServiceError {
    fn into_handler_error(self) -> HandlerError {
        self.0
    }
}

impl IntoHandlerError for Infallible {
    fn into_handler_error(self) -> HandlerError {
        match self {}
    }
}

/// The error of middleware that boxes errors: a [`ServiceError`] inside it (directly, or as
/// the source of a wrapper such as `Buffer`'s) is the handler's own error; tower's `Elapsed`
/// is a retryable `Timeout`; anything else is a retryable error with its message.
impl IntoHandlerError for BoxError {
    fn into_handler_error(self) -> HandlerError {
        let err = match self.downcast::<ServiceError>() {
            Ok(own) => return own.0,
            Err(err) => err,
        };
        let mut cause: Option<&(dyn StdError + 'static)> = err.source();
        while let Some(current) = cause {
            if let Some(own) = current.downcast_ref::<ServiceError>() {
                return copy(&own.0);
            }
            cause = current.source();
        }
        if err.is::<tower::timeout::error::Elapsed>() {
            return HandlerError::new(err.to_string()).with_class("Timeout");
        }
        HandlerError::new(err.to_string())
    }
}

/// `HandlerError` is not `Clone`; a shared one (inside an `Arc`'d wrapper) is rebuilt.
fn copy(err: &HandlerError) -> HandlerError {
    let fresh = if err.is_permanent() {
        HandlerError::permanent(err.message())
    } else {
        HandlerError::new(err.message())
    };
    fresh.with_class(err.class())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A wrapper that keeps the handler's error as its source, as tower's `Buffer` does.
    #[derive(Debug)]
    struct Wrapped(ServiceError);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("buffered service failed")
        }
    }

    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    fn boxed(err: impl StdError + Send + Sync + 'static) -> BoxError {
        Box::new(err)
    }

    #[test]
    fn a_handlers_own_error_survives_boxing_permanence_and_class_included() {
        let err = ServiceError::from(HandlerError::permanent("bad address").with_class("Bounce"));
        let back = boxed(err).into_handler_error();
        assert!(back.is_permanent());
        assert_eq!((back.class(), back.message()), ("Bounce", "bad address"));

        let wrapped = Wrapped(ServiceError::from(HandlerError::permanent("bad address")));
        let back = boxed(wrapped).into_handler_error();
        assert!(back.is_permanent());
        assert_eq!(back.message(), "bad address");

        let retryable = boxed(ServiceError::from(HandlerError::new("smtp down")));
        assert!(!retryable.into_handler_error().is_permanent());
    }

    #[test]
    fn middleware_errors_are_retried_and_a_tower_timeout_is_a_timeout() {
        let elapsed = boxed(tower::timeout::error::Elapsed::new()).into_handler_error();
        assert!(!elapsed.is_permanent());
        assert_eq!(elapsed.class(), "Timeout");

        let other = boxed(std::io::Error::other("connection reset")).into_handler_error();
        assert!(!other.is_permanent());
        assert_eq!(other.message(), "connection reset");
    }
}
