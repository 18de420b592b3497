//! Message texts of the REST API in Chinese, English and Japanese.
//!
//! The titles of errors 400, 401, 403, 404 (VM), 404-GROUP, 429 and 503 are the product
//! specification's wording; the others follow the same style.

use crate::i18n::{Lang, Text};

pub const FETCHED: Text = Text {
    zh: "获取成功",
    en: "Fetched successfully",
    ja: "取得に成功しました",
};

pub const ACKNOWLEDGED: Text = Text {
    zh: "告警已确认",
    en: "Alert acknowledged",
    ja: "アラートを確認しました",
};

pub const COLLECTION_STARTED: Text = Text {
    zh: "已开始采集",
    en: "Collection started",
    ja: "収集を開始しました",
};

pub const HEALTHY: Text = Text {
    zh: "服务正常",
    en: "Service is healthy",
    ja: "サービスは正常です",
};

pub const BAD_REQUEST: Text = Text {
    zh: "请求参数错误",
    en: "Bad Request",
    ja: "リクエストパラメータエラー",
};

pub const UNAUTHORIZED: Text = Text {
    zh: "未授权",
    en: "Unauthorized",
    ja: "未認証",
};

pub const FORBIDDEN: Text = Text {
    zh: "权限不足",
    en: "Forbidden",
    ja: "アクセス権限がありません",
};

pub const VM_NOT_FOUND: Text = Text {
    zh: "VM不存在",
    en: "VM Not Found",
    ja: "VMが見つかりません",
};

pub const GROUP_NOT_FOUND: Text = Text {
    zh: "分组不存在",
    en: "Group Not Found",
    ja: "グループが見つかりません",
};

pub const CLUSTER_NOT_FOUND: Text = Text {
    zh: "集群不存在",
    en: "Cluster Not Found",
    ja: "クラスタが見つかりません",
};

pub const HOST_NOT_FOUND: Text = Text {
    zh: "主机不存在",
    en: "Host Not Found",
    ja: "ホストが見つかりません",
};

pub const DATACENTER_NOT_FOUND: Text = Text {
    zh: "数据中心不存在",
    en: "Datacenter Not Found",
    ja: "データセンターが見つかりません",
};

pub const ALERT_NOT_FOUND: Text = Text {
    zh: "告警不存在",
    en: "Alert Not Found",
    ja: "アラートが見つかりません",
};

pub const ROUTE_NOT_FOUND: Text = Text {
    zh: "资源不存在",
    en: "Not Found",
    ja: "リソースが見つかりません",
};

pub const METHOD_NOT_ALLOWED: Text = Text {
    zh: "不支持该请求方法",
    en: "Method Not Allowed",
    ja: "このメソッドは使用できません",
};

pub const PAYLOAD_TOO_LARGE: Text = Text {
    zh: "请求体过大",
    en: "Payload Too Large",
    ja: "リクエスト本文が大きすぎます",
};

pub const UNSUPPORTED_MEDIA_TYPE: Text = Text {
    zh: "不支持的内容类型",
    en: "Unsupported Media Type",
    ja: "サポートされていないコンテンツタイプです",
};

pub const RATE_LIMITED: Text = Text {
    zh: "请求过于频繁",
    en: "Rate Limit",
    ja: "リクエストが多すぎます",
};

pub const UNAVAILABLE: Text = Text {
    zh: "实时数据服务不可用",
    en: "Service Unavailable",
    ja: "リアルタイムデータサービスが利用できません",
};

pub const INTERNAL: Text = Text {
    zh: "服务器内部错误",
    en: "Internal Server Error",
    ja: "サーバー内部エラー",
};

/// Returns `title` followed by `detail` in the punctuation of `lang`.
///
/// The detail (which field, which ID, why) is English, because it quotes names from the
/// request and messages of the JSON parser; the title around it is localized.
pub fn with_detail(title: &Text, lang: Lang, detail: &str) -> String {
    match lang {
        Lang::Zh | Lang::Ja => format!("{}：{detail}", title.get(lang)),
        Lang::En => format!("{}: {detail}", title.get(lang)),
    }
}
