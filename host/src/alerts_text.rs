//! Alert messages in Chinese, English and Japanese, built from the rule's metric and the
//! alert's numbers. A rule not named after a known metric is shown by its own name.

use crate::alerts::{Alert, Direction, Severity};
use crate::i18n::{Lang, Text};

/// Display name and unit of the metrics rules usually watch.
struct MetricLabel {
    path: &'static str,
    name: Text,
    unit: &'static str,
}

const fn text(zh: &'static str, en: &'static str, ja: &'static str) -> Text {
    Text { zh, en, ja }
}

const LABELS: &[MetricLabel] = &[
    MetricLabel {
        path: "cpu.usagePercent",
        name: text("CPU使用率", "CPU usage", "CPU使用率"),
        unit: " %",
    },
    MetricLabel {
        path: "cpu.ready",
        name: text("CPU就绪时间", "CPU ready time", "CPUレディ時間"),
        unit: " %",
    },
    MetricLabel {
        path: "cpu.usageMHz",
        name: text("CPU使用量", "CPU usage", "CPU使用量"),
        unit: " MHz",
    },
    MetricLabel {
        path: "memory.usagePercent",
        name: text("内存使用率", "memory usage", "メモリ使用率"),
        unit: " %",
    },
    MetricLabel {
        path: "memory.swappedMB",
        name: text("内存交换量", "swapped memory", "スワップ済みメモリ"),
        unit: " MB",
    },
    MetricLabel {
        path: "memory.balloonedMB",
        name: text("内存气球回收量", "ballooned memory", "バルーンメモリ"),
        unit: " MB",
    },
    MetricLabel {
        path: "memory.availableMB",
        name: text("可用内存", "available memory", "利用可能メモリ"),
        unit: " MB",
    },
    MetricLabel {
        path: "disk.usagePercent",
        name: text("磁盘使用率", "disk usage", "ディスク使用率"),
        unit: " %",
    },
    MetricLabel {
        path: "disk.readLatency",
        name: text("磁盘读延迟", "disk read latency", "ディスク読み取り遅延"),
        unit: " ms",
    },
    MetricLabel {
        path: "disk.writeLatency",
        name: text("磁盘写延迟", "disk write latency", "ディスク書き込み遅延"),
        unit: " ms",
    },
    MetricLabel {
        path: "network.droppedPackets",
        name: text("网络丢包数", "dropped packets", "ドロップパケット数"),
        unit: "",
    },
    MetricLabel {
        path: "network.dropped",
        name: text("网络丢包数", "dropped packets", "ドロップパケット数"),
        unit: "",
    },
    MetricLabel {
        path: "network.errors",
        name: text("网络错误数", "network errors", "ネットワークエラー数"),
        unit: "",
    },
];

fn severity_name(severity: Severity) -> Text {
    match severity {
        Severity::Low => text("低", "low", "低"),
        Severity::Medium => text("中", "medium", "中"),
        Severity::High => text("高", "high", "高"),
        Severity::Critical => text("严重", "critical", "重大"),
    }
}

/// Formats a number with at most two decimals and no trailing zeros. A value that rounds
/// to zero prints as `0`, never `-0`.
fn number(value: f64) -> String {
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

/// Returns the alert's message in `lang`, such as
/// `web-01: CPU usage 92.5 % is above the high threshold 80 %`.
pub fn message(alert: &Alert, lang: Lang) -> String {
    let label = LABELS.iter().find(|label| label.path == alert.rule);
    let (name, unit) = match label {
        Some(label) => (label.name.get(lang).to_owned(), label.unit),
        None => (alert.rule.clone(), ""),
    };
    let value = format!("{}{unit}", number(alert.current_value));
    let threshold = format!("{}{unit}", number(alert.threshold));
    let severity = severity_name(alert.severity).get(lang);
    let vm = &alert.vm_name;
    match (lang, alert.direction) {
        (Lang::En, Direction::Above) => {
            format!("{vm}: {name} {value} is above the {severity} threshold {threshold}")
        }
        (Lang::En, Direction::Below) => {
            format!("{vm}: {name} {value} is below the {severity} threshold {threshold}")
        }
        (Lang::Zh, Direction::Above) => {
            format!("{vm}：{name} {value}，超过{severity}级阈值 {threshold}")
        }
        (Lang::Zh, Direction::Below) => {
            format!("{vm}：{name} {value}，低于{severity}级阈值 {threshold}")
        }
        (Lang::Ja, Direction::Above) => {
            format!("{vm}: {name} {value} が{severity}レベルのしきい値 {threshold} を超えています")
        }
        (Lang::Ja, Direction::Below) => {
            format!(
                "{vm}: {name} {value} が{severity}レベルのしきい値 {threshold} を下回っています"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertMetric;

    fn alert(rule: &str, direction: Direction) -> Alert {
        Alert {
            id: "alt-1".to_owned(),
            vm_id: "vm-1".to_owned(),
            vm_name: "web-01".to_owned(),
            plugin: "threshold-rules".to_owned(),
            rule: rule.to_owned(),
            metric: AlertMetric::Cpu,
            severity: Severity::High,
            threshold: 80.0,
            current_value: 92.5,
            direction,
            rule_message: String::new(),
            fired_at_ms: 0,
            changed_at_ms: 0,
            resolved_at_ms: None,
            acknowledged_by: None,
            acknowledged_at_ms: None,
        }
    }

    #[test]
    fn message_in_each_language() {
        let alert = alert("cpu.usagePercent", Direction::Above);
        assert_eq!(
            message(&alert, Lang::En),
            "web-01: CPU usage 92.5 % is above the high threshold 80 %"
        );
        assert_eq!(
            message(&alert, Lang::Zh),
            "web-01：CPU使用率 92.5 %，超过高级阈值 80 %"
        );
        assert_eq!(
            message(&alert, Lang::Ja),
            "web-01: CPU使用率 92.5 % が高レベルのしきい値 80 % を超えています"
        );
    }

    #[test]
    fn unknown_rule_uses_its_name() {
        let alert = alert("custom.latency", Direction::Below);
        assert_eq!(
            message(&alert, Lang::En),
            "web-01: custom.latency 92.5 is below the high threshold 80"
        );
    }

    #[test]
    fn numbers_drop_trailing_zeros_and_sign_of_zero() {
        assert_eq!(number(80.0), "80");
        assert_eq!(number(92.5), "92.5");
        assert_eq!(number(0.126), "0.13");
        assert_eq!(number(100.0), "100");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(-0.0), "0");
        assert_eq!(number(-0.001), "0");
        assert_eq!(number(-1.5), "-1.5");
    }
}
