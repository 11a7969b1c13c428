//! The provider's log: one line per event on stderr, `ouro-addons[<kind>]: <message>` (what
//! the dyno's log shows), and a line per request.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::kinds::Kind;

/// Sends this process's events to stderr as `ouro-addons[<kind>]: …` lines.
pub fn init(kind: Kind) {
    tracing_subscriber::fmt().with_writer(std::io::stderr).event_format(Prefixed(kind)).init();
}

/// The line of an event: the prefix, then its message (and fields, if any).
pub struct Prefixed(pub Kind);

impl<S, N> FormatEvent<S, N> for Prefixed
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "{}", prefix(self.0))?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// `ouro-addons[<kind>]: `.
pub fn prefix(kind: Kind) -> String {
    format!("ouro-addons[{kind}]: ")
}

/// Middleware: `<METHOD> <path> -> <status>` for every request.
pub async fn requests(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let response = next.run(request).await;
    tracing::info!("{method} {path} -> {}", response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_carry_the_kind() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .event_format(Prefixed(Kind::Postgresql))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("provisioning {} for {}", "pg-1", "shop");
            tracing::warn!("could not remove the half-made server app pg-2");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "ouro-addons[postgresql]: provisioning pg-1 for shop\n\
             ouro-addons[postgresql]: could not remove the half-made server app pg-2\n"
        );
    }
}
