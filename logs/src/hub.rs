//! The hub: each app's recent lines, and the followers of its new ones.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use crate::overflow::{LossyReceiver, LossySender, lock, lossy_channel};
use crate::{Filter, LogLine};

/// Lines kept per app by default (Heroku keeps 1,500).
pub const RECENT_LINES: usize = 1500;

/// Apps remembered by default; past that, the app touched least recently is forgotten.
pub const MAX_APPS: usize = 10_000;

/// Bytes of kept lines (their texts and names) across every app, by default: past it, the
/// apps touched least recently lose their oldest lines first. 1,500 lines of up to 10 KB for
/// each of 10,000 apps would be 150 GB; this keeps the hub within a dyno's memory whatever the
/// number of apps (the journal in SQL keeps each app's lines across restarts regardless).
pub const MAX_BYTES: usize = 256 << 20;

/// Lines queued for one follower; a follower that falls further behind loses lines (L10).
pub const FOLLOW_QUEUE: usize = 1000;

/// Where lines are published and read. Cheap to clone (one `Arc`); every method takes a std
/// lock for a short, non-blocking critical section.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Mutex<Inner>>,
}

/// New lines of one app that match a filter, from the moment of [`Hub::follow`]. Dropping it
/// removes it from the hub.
pub struct Follower {
    rx: LossyReceiver,
    hub: Weak<Mutex<Inner>>,
    app: String,
    id: u64,
}

impl Hub {
    /// A hub keeping `capacity` lines per app (at least 1) for up to [`MAX_APPS`] apps.
    pub fn new(capacity: usize) -> Hub {
        Hub::with_max_apps(capacity, MAX_APPS)
    }

    /// A hub keeping `capacity` lines per app (at least 1) for up to `max_apps` apps (at least 1).
    pub fn with_max_apps(capacity: usize, max_apps: usize) -> Hub {
        Hub::with_bounds(capacity, max_apps, MAX_BYTES)
    }

    /// A hub keeping `capacity` lines per app, `max_apps` apps and `max_bytes` of lines in all
    /// (each at least 1).
    pub fn with_bounds(capacity: usize, max_apps: usize, max_bytes: usize) -> Hub {
        let inner = Inner {
            capacity: capacity.max(1),
            max_apps: max_apps.max(1),
            max_bytes: max_bytes.max(1),
            bytes: 0,
            apps: HashMap::new(),
            by_touch: BTreeMap::new(),
            clock: 0,
            next_follower: 0,
        };
        Hub { inner: Arc::new(Mutex::new(inner)) }
    }

    /// Keeps `line` (bounded as [`LogLine::new`] does) and hands it to the app's matching
    /// followers. Never blocks: a follower whose queue is full loses it (counted).
    pub fn publish(&self, mut line: LogLine) {
        line.bound();
        let mut inner = lock(&self.inner);
        let capacity = inner.capacity;
        let log = inner.touch(&line.app);
        // Followers that are gone are pruned here as well as when they drop.
        log.followers.retain(|follower| match follower.filter.matches(&line) {
            true => follower.tx.send(line.clone()),
            false => !follower.tx.is_closed(),
        });
        let mut freed = 0;
        if log.recent.len() >= capacity {
            freed = log.recent.pop_front().map_or(0, |old| size_of(&old));
        }
        let added = size_of(&line);
        log.recent.push_back(line);
        inner.bytes = inner.bytes + added - freed;
        inner.shed();
    }

    /// Bytes of lines kept now, across apps.
    pub fn bytes(&self) -> usize {
        lock(&self.inner).bytes
    }

    /// The last `n` (at most the capacity) lines of `app` that match `filter`, oldest first.
    pub fn recent(&self, app: &str, filter: &Filter, n: usize) -> Vec<LogLine> {
        lock(&self.inner).recent(app, filter, n)
    }

    /// Follows the new lines of `app` that match `filter`.
    pub fn follow(&self, app: &str, filter: Filter) -> Follower {
        let mut inner = lock(&self.inner);
        self.follow_locked(&mut inner, app, filter)
    }

    /// The last `n` lines of `app` that match `filter` (as [`Hub::recent`]) and a follower of
    /// the lines after them, taken at one instant: no line is missed or seen twice between.
    pub fn recent_and_follow(&self, app: &str, filter: Filter, n: usize) -> (Vec<LogLine>, Follower) {
        let mut inner = lock(&self.inner);
        let recent = inner.recent(app, &filter, n);
        (recent, self.follow_locked(&mut inner, app, filter))
    }

    fn follow_locked(&self, inner: &mut Inner, app: &str, filter: Filter) -> Follower {
        let (tx, rx) = lossy_channel(FOLLOW_QUEUE, app);
        inner.next_follower += 1;
        let id = inner.next_follower;
        inner.touch(app).followers.push(FollowerSlot { id, filter, tx });
        Follower { rx, hub: Arc::downgrade(&self.inner), app: app.to_string(), id }
    }

    /// How many followers `app` has now.
    pub fn follower_count(&self, app: &str) -> usize {
        lock(&self.inner).apps.get(app).map_or(0, |log| log.followers.len())
    }
}

impl Default for Hub {
    fn default() -> Hub {
        Hub::new(RECENT_LINES)
    }
}

impl Follower {
    /// The next line, oldest first; an L10 line stands for lines lost while the queue was full.
    /// `None` when the hub forgot the app (see [`MAX_APPS`]) or is gone.
    pub async fn next(&mut self) -> Option<LogLine> {
        self.rx.next().await
    }

    /// Lines this follower lost because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.rx.dropped()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let Some(inner) = self.hub.upgrade() else { return };
        let mut inner = lock(&inner);
        if let Some(log) = inner.apps.get_mut(&self.app) {
            log.followers.retain(|follower| follower.id != self.id);
        }
    }
}

struct Inner {
    capacity: usize,
    max_apps: usize,
    max_bytes: usize,
    /// Bytes of every app's kept lines ([`size_of`]).
    bytes: usize,
    apps: HashMap<String, AppLog>,
    /// Apps by the `clock` of their last touch (publish or follow), oldest first.
    by_touch: BTreeMap<u64, String>,
    clock: u64,
    next_follower: u64,
}

struct AppLog {
    recent: VecDeque<LogLine>,
    followers: Vec<FollowerSlot>,
    touched: u64,
}

struct FollowerSlot {
    id: u64,
    filter: Filter,
    tx: LossySender,
}

impl Inner {
    fn recent(&self, app: &str, filter: &Filter, n: usize) -> Vec<LogLine> {
        let Some(log) = self.apps.get(app) else { return Vec::new() };
        let mut lines: Vec<LogLine> =
            log.recent.iter().rev().filter(|line| filter.matches(line)).take(n.min(self.capacity)).cloned().collect();
        lines.reverse();
        lines
    }

    /// Past `max_bytes`, drops the oldest lines of the apps touched least recently (the app
    /// just published to last: a busy app keeps its lines longest).
    fn shed(&mut self) {
        let mut candidates = self.by_touch.values().cloned().collect::<Vec<_>>().into_iter();
        while self.bytes > self.max_bytes {
            let Some(app) = candidates.next() else { break };
            let Some(log) = self.apps.get_mut(&app) else { continue };
            while self.bytes > self.max_bytes {
                let Some(old) = log.recent.pop_front() else { break };
                self.bytes -= size_of(&old);
            }
        }
    }

    /// The app's log, made if new (forgetting the least recently touched app past
    /// `max_apps`), marked as touched now.
    fn touch(&mut self, app: &str) -> &mut AppLog {
        self.clock += 1;
        let now = self.clock;
        if !self.apps.contains_key(app) {
            while self.apps.len() >= self.max_apps {
                let Some((_, oldest)) = self.by_touch.pop_first() else { break };
                if let Some(forgotten) = self.apps.remove(&oldest) {
                    self.bytes -= forgotten.recent.iter().map(size_of).sum::<usize>();
                }
            }
            self.apps.insert(app.to_string(), AppLog { recent: VecDeque::new(), followers: Vec::new(), touched: 0 });
        }
        let log = self.apps.get_mut(app).expect("inserted above");
        self.by_touch.remove(&log.touched);
        log.touched = now;
        self.by_touch.insert(now, app.to_string());
        log
    }
}

/// What a kept line costs, about: its strings and the struct around them.
fn size_of(line: &LogLine) -> usize {
    line.app.len() + line.process.len() + line.text.len() + 64
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Source;

    const WAIT: Duration = Duration::from_secs(10);

    fn line(app: &str, process: &str, text: &str) -> LogLine {
        LogLine::new(app, Source::App, process, text)
    }

    fn texts(lines: &[LogLine]) -> Vec<&str> {
        lines.iter().map(|line| line.text.as_str()).collect()
    }

    async fn next(follower: &mut Follower) -> Option<LogLine> {
        tokio::time::timeout(WAIT, follower.next()).await.expect("a line within 10 s")
    }

    #[tokio::test]
    async fn recent_and_follow_neither_miss_nor_repeat_a_line() {
        let hub = Hub::new(100);
        for i in 0..10 {
            hub.publish(line("shop", "web.1", &format!("before {i}")));
        }
        let (recent, mut follower) = hub.recent_and_follow("shop", Filter::default(), 3);
        assert_eq!(texts(&recent), ["before 7", "before 8", "before 9"]);
        hub.publish(line("shop", "web.1", "after"));
        assert_eq!(next(&mut follower).await.expect("a line").text, "after");
    }

    #[test]
    fn recent_keeps_the_last_lines_of_each_app_in_order() {
        let hub = Hub::new(100);
        for i in 0..1000 {
            for app in 0..50 {
                hub.publish(line(&format!("app{app}"), &format!("web.{}", i % 3 + 1), &format!("{app}:{i}")));
            }
        }
        for app in 0..50 {
            let app_name = format!("app{app}");
            let all = hub.recent(&app_name, &Filter::default(), 10_000);
            assert_eq!(all.len(), 100, "capped at the capacity");
            let expect: Vec<String> = (900..1000).map(|i| format!("{app}:{i}")).collect();
            assert_eq!(texts(&all), expect);
            assert!(all.iter().all(|line| line.app == app_name));

            let last = hub.recent(&app_name, &Filter::default(), 3);
            assert_eq!(texts(&last), [format!("{app}:997"), format!("{app}:998"), format!("{app}:999")]);

            // The last 5 lines of web.1: i % 3 == 0.
            let web1 = Filter { process: Some("web.1".into()), source: None };
            let expect: Vec<String> =
                [984, 987, 990, 993, 996, 999].iter().skip(1).map(|i| format!("{app}:{i}")).collect();
            assert_eq!(texts(&hub.recent(&app_name, &web1, 5)), expect);
        }
        assert!(hub.recent("nope", &Filter::default(), 10).is_empty());
        assert!(hub.recent("app1", &Filter::default(), 0).is_empty());
    }

    #[test]
    fn default_capacity_is_recent_lines() {
        let hub = Hub::default();
        for i in 0..RECENT_LINES + 10 {
            hub.publish(line("a", "web.1", &i.to_string()));
        }
        let all = hub.recent("a", &Filter::default(), usize::MAX);
        assert_eq!(all.len(), RECENT_LINES);
        assert_eq!(all[0].text, "10");
    }

    #[test]
    fn apps_past_the_bound_are_forgotten_least_recently_touched_first() {
        let hub = Hub::with_max_apps(10, 3);
        for app in ["a", "b", "c"] {
            hub.publish(line(app, "web.1", app));
        }
        hub.publish(line("a", "web.1", "a again")); // b is now the oldest touched
        hub.publish(line("d", "web.1", "d"));
        let known = |app: &str| !hub.recent(app, &Filter::default(), 10).is_empty();
        assert_eq!(["a", "b", "c", "d"].map(known), [true, false, true, true]);
        for i in 0..1000 {
            hub.publish(line(&format!("x{i}"), "web.1", "x"));
        }
        let inner = lock(&hub.inner);
        assert_eq!((inner.apps.len(), inner.by_touch.len()), (3, 3));
        assert!(inner.apps.contains_key("x999") && inner.apps.contains_key("x997"));
    }

    #[tokio::test]
    async fn a_follower_of_a_forgotten_app_ends() {
        let hub = Hub::with_max_apps(10, 1);
        let mut follower = hub.follow("a", Filter::default());
        hub.publish(line("a", "web.1", "one"));
        hub.publish(line("b", "web.1", "b"));
        assert_eq!(next(&mut follower).await.unwrap().text, "one");
        assert_eq!(next(&mut follower).await, None);
    }

    #[tokio::test]
    async fn a_fast_follower_gets_every_matching_line_in_order() {
        let hub = Hub::new(10);
        hub.publish(line("a", "web.1", "before"));
        let mut web = hub.follow("a", Filter::parse(Some("web"), None).unwrap());
        let mut ouro = hub.follow("a", Filter::parse(None, Some("ouro")).unwrap());
        // A reader that keeps up: it reads each burst (smaller than its queue) as it comes, on
        // another task, while the next burst waits for it.
        let (burst_read, mut burst_read_rx) = tokio::sync::mpsc::channel::<()>(1);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..20 {
                for _ in 0..FOLLOW_QUEUE - 1 {
                    got.push(next(&mut web).await.unwrap().text);
                }
                burst_read.send(()).await.unwrap();
            }
            (got, web.dropped())
        });
        let mut i = 0;
        for _ in 0..20 {
            for _ in 0..FOLLOW_QUEUE - 1 {
                hub.publish(line("a", &format!("web.{}", i % 2 + 1), &i.to_string()));
                hub.publish(line("other", "web.1", "not a's"));
                hub.publish(line("a", "worker.1", "not web"));
                i += 1;
            }
            tokio::time::timeout(WAIT, burst_read_rx.recv()).await.unwrap().unwrap();
        }
        hub.publish(LogLine::new("a", Source::Ouro, "api", "done"));
        let (got, dropped) = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
        let expect: Vec<String> = (0..i).map(|i| i.to_string()).collect();
        assert_eq!(got, expect);
        assert_eq!(dropped, 0);
        assert_eq!(next(&mut ouro).await.unwrap().text, "done");
    }

    #[tokio::test]
    async fn a_slow_follower_is_bounded_and_told_what_it_lost() {
        let hub = Hub::new(10);
        let mut follower = hub.follow("a", Filter::default());
        for i in 0..5000 {
            hub.publish(line("a", "web.1", &i.to_string()));
        }
        assert_eq!(follower.dropped(), 5000 - FOLLOW_QUEUE as u64);
        for i in 0..FOLLOW_QUEUE {
            assert_eq!(next(&mut follower).await.unwrap().text, i.to_string());
        }
        let l10 = next(&mut follower).await.unwrap();
        assert_eq!((l10.source, l10.process.as_str(), l10.app.as_str()), (Source::Ouro, "logs", "a"));
        let prefix = "Error L10 (output buffer overflow): 4000 messages dropped since ";
        assert!(l10.text.starts_with(prefix), "{}", l10.text);
        assert!(humantime::parse_rfc3339(&l10.text[prefix.len()..]).is_ok(), "{}", l10.text);

        // Nothing more until the next line, which arrives normally.
        assert!(follower.rx.try_next().is_none());
        hub.publish(line("a", "web.1", "after"));
        assert_eq!(next(&mut follower).await.unwrap().text, "after");
    }

    #[tokio::test]
    async fn the_gap_is_reported_in_place_when_lines_keep_coming() {
        let hub = Hub::new(10);
        let mut follower = hub.follow("a", Filter::default());
        for i in 0..FOLLOW_QUEUE + 7 {
            hub.publish(line("a", "web.1", &i.to_string()));
        }
        // Read a few to make room; the next published lines come after the L10 line.
        for i in 0..3 {
            assert_eq!(next(&mut follower).await.unwrap().text, i.to_string());
        }
        hub.publish(line("a", "web.1", "new 1"));
        hub.publish(line("a", "web.1", "new 2"));
        for i in 3..FOLLOW_QUEUE {
            assert_eq!(next(&mut follower).await.unwrap().text, i.to_string());
        }
        let l10 = next(&mut follower).await.unwrap();
        assert!(l10.text.starts_with("Error L10 (output buffer overflow): 7 messages dropped since "), "{l10}");
        assert_eq!(next(&mut follower).await.unwrap().text, "new 1");
        assert_eq!(next(&mut follower).await.unwrap().text, "new 2");
        assert!(follower.rx.try_next().is_none());
    }

    #[test]
    fn hubs_and_followers_cross_tasks_and_threads() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        let hub = Hub::new(1);
        send_sync(&hub);
        let mut follower = hub.follow("a", Filter::default());
        send(&follower);
        send(&follower.next());
    }

    #[test]
    fn dropped_followers_are_pruned() {
        let hub = Hub::new(10);
        let a = hub.follow("a", Filter::default());
        let b = hub.follow("a", Filter::parse(Some("web.2"), None).unwrap());
        assert_eq!(hub.follower_count("a"), 2);
        drop(a);
        assert_eq!(hub.follower_count("a"), 1);
        // A follower outliving its hub drops quietly.
        drop(hub);
        drop(b);
    }

    #[test]
    fn past_its_byte_budget_the_hub_drops_the_oldest_lines_of_the_quietest_apps_first() {
        let each = size_of(&line("quiet", "web.1", "0123456789"));
        let hub = Hub::with_bounds(1_000, 100, 20 * each);
        for i in 0..10 {
            hub.publish(line("quiet", "web.1", &format!("quiet {i:03}")));
        }
        for i in 0..15 {
            hub.publish(line("busy", "web.1", &format!("busy {i:04}")));
        }
        assert!(hub.bytes() <= 20 * each, "{} > {}", hub.bytes(), 20 * each);
        let busy = hub.recent("busy", &Filter::default(), 1_000);
        assert_eq!(busy.len(), 15, "the app touched last keeps its lines");
        let quiet = hub.recent("quiet", &Filter::default(), 1_000);
        assert_eq!(texts(&quiet), ["quiet 005", "quiet 006", "quiet 007", "quiet 008", "quiet 009"], "oldest first");
        // More of the busy app: the quiet one goes entirely, then the busy one's oldest.
        for i in 15..40 {
            hub.publish(line("busy", "web.1", &format!("busy {i:04}")));
        }
        assert!(hub.bytes() <= 20 * each);
        assert!(hub.recent("quiet", &Filter::default(), 1_000).is_empty());
        let busy = hub.recent("busy", &Filter::default(), 1_000);
        assert_eq!(busy.len(), 20);
        assert_eq!(busy.last().unwrap().text, "busy 0039");
    }
}
