//! How the daemon's own events are printed on standard error: the warnings of the node, the
//! controllers and the server, and with `serve -v` each request and each pod's steps. As
//! `podvisor: …` lines for people, or as JSON lines (`serve --log-format json`) for service
//! managers and log collectors, with the request's and pod's fields apart.

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `podvisor: message` lines.
    Text,
    /// One JSON object a line: timestamp, level, target, message and the event's fields.
    Json,
}

/// The text form: `podvisor: ` and the message, nothing else.
struct Text;

/// Keeps the `message` field of an event.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }
}

impl<S, N> FormatEvent<S, N> for Text
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let mut message = Message(String::new());
        event.record(&mut message);
        writeln!(writer, "podvisor: {}", message.0)
    }
}

/// Prints podvisor's events at INFO and above in `format` from now on (other crates' events,
/// such as the Kubernetes client's, are left out).
pub fn init(format: Format) {
    let ours =
        tracing_subscriber::filter::filter_fn(|m| m.target().starts_with("podvisor") && *m.level() <= Level::INFO);
    let installed = match format {
        Format::Text => {
            let layer = tracing_subscriber::fmt::layer().event_format(Text).with_writer(std::io::stderr);
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer.with_filter(ours)))
        }
        Format::Json => {
            let layer = tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_writer(std::io::stderr);
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer.with_filter(ours)))
        }
    };
    if let Err(e) = installed {
        eprintln!("podvisor: logging: {e}");
    }
}
