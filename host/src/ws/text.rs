//! Error messages and close reasons of the push channel in Chinese, English and Japanese.
//!
//! Messages may contain `{0}` and `{1}`, replaced by [`render`]. Close reasons go into a
//! close frame, whose reason is limited to 123 bytes of UTF-8, so they stay short.

use crate::i18n::{Lang, Text};

const fn text(zh: &'static str, en: &'static str, ja: &'static str) -> Text {
    Text { zh, en, ja }
}

/// Replaces `{0}`, `{1}`, ... in `text` for `lang` with `args`.
pub fn render(text: &Text, lang: Lang, args: &[&str]) -> String {
    let mut rendered = text.get(lang).to_owned();
    for (index, arg) in args.iter().enumerate() {
        rendered = rendered.replace(&format!("{{{index}}}"), arg);
    }
    rendered
}

pub const INVALID_JSON: Text = text(
    "消息不是有效的 JSON：{0}",
    "The message is not valid JSON: {0}",
    "メッセージが有効な JSON ではありません: {0}",
);

pub const UNKNOWN_TYPE: Text = text(
    "未知的消息类型“{0}”；可用类型为 subscribe、unsubscribe、ping",
    "Unknown message type `{0}`; expected subscribe, unsubscribe or ping",
    "不明なメッセージ種別「{0}」です。subscribe、unsubscribe、ping のいずれかを指定してください",
);

pub const INVALID_FIELD: Text = text(
    "字段 {0} 缺失或类型错误：应为{1}",
    "Field {0} is missing or has the wrong type: expected {1}",
    "フィールド {0} がないか型が正しくありません: {1} を指定してください",
);

pub const BINARY_NOT_SUPPORTED: Text = text(
    "不支持二进制帧；请发送 JSON 文本帧",
    "Binary frames are not supported; send JSON text frames",
    "バイナリフレームには対応していません。JSON のテキストフレームを送信してください",
);

pub const FRAME_TOO_LARGE: Text = text(
    "消息大小为 {0} 字节，超过上限 {1} 字节；已忽略",
    "The message has {0} bytes, over the limit of {1} bytes; it was ignored",
    "メッセージは {0} バイトで、上限の {1} バイトを超えているため無視しました",
);

pub const UNKNOWN_VM: Text = text(
    "以下虚拟机不存在，未订阅：{0}",
    "These VMs do not exist and were not subscribed: {0}",
    "次の VM は存在しないため購読していません: {0}",
);

pub const UNKNOWN_METRIC_GROUP: Text = text(
    "未知的指标组“{0}”；可用指标组为 cpu、memory、disk、network、system；本次订阅未生效",
    "Unknown metric group `{0}`; expected cpu, memory, disk, network or system; nothing was subscribed",
    "不明なメトリクスグループ「{0}」です。cpu、memory、disk、network、system のいずれかを指定してください。購読は行われていません",
);

pub const TOKEN_MISSING: Text = text(
    "缺少令牌：请在查询参数 token 中提供访问令牌",
    "No token: pass the access token in the `token` query parameter",
    "トークンがありません。クエリパラメータ token にアクセストークンを指定してください",
);

pub const TOKEN_EXPIRED: Text = text(
    "令牌已过期；请获取新令牌后重新连接",
    "The token has expired; get a new token and reconnect",
    "トークンの有効期限が切れています。新しいトークンで再接続してください",
);

pub const TOKEN_INVALID: Text = text(
    "令牌无效：{0}",
    "The token is invalid: {0}",
    "トークンが無効です: {0}",
);

pub const PERMISSION_DENIED: Text = text(
    "令牌没有 {0} 权限",
    "The token lacks the {0} permission",
    "トークンに {0} 権限がありません",
);

// Close reasons: at most 123 bytes each in every language.

pub const CLOSE_TOKEN: Text = text(
    "令牌无效或已过期",
    "token invalid or expired",
    "トークンが無効か期限切れ",
);

pub const CLOSE_SUBSCRIPTION_LIMIT: Text = text(
    "订阅超过 100 台虚拟机",
    "subscription over 100 VMs",
    "購読が 100 VM を超えています",
);

pub const CLOSE_MESSAGE_TOO_BIG: Text =
    text("消息过大", "message too big", "メッセージが大きすぎます");

pub const CLOSE_IDLE: Text = text(
    "长时间未收到客户端数据",
    "idle timeout: no frame from the client",
    "クライアントからのフレームがなくタイムアウトしました",
);

pub const CLOSE_SLOW_CONSUMER: Text = text(
    "客户端读取过慢；请稍后重连",
    "client too slow to read; reconnect later",
    "クライアントの読み取りが遅すぎます。後で再接続してください",
);

pub const CLOSE_CONNECTION_LIMIT: Text = text(
    "连接数已达上限；请稍后重连",
    "server at its connection limit; reconnect later",
    "接続数が上限に達しています。後で再接続してください",
);

pub const CLOSE_INTERNAL: Text = text(
    "服务器内部错误：推送已停止",
    "internal error: the push of updates stopped",
    "内部エラー: 更新の配信が停止しました",
);

pub const CLOSE_SHUTDOWN: Text = text(
    "服务器正在关闭",
    "server shutting down",
    "サーバーを停止しています",
);

#[cfg(test)]
mod tests {
    use super::*;

    const CLOSE_REASONS: &[Text] = &[
        CLOSE_TOKEN,
        CLOSE_SUBSCRIPTION_LIMIT,
        CLOSE_MESSAGE_TOO_BIG,
        CLOSE_IDLE,
        CLOSE_SLOW_CONSUMER,
        CLOSE_CONNECTION_LIMIT,
        CLOSE_INTERNAL,
        CLOSE_SHUTDOWN,
    ];

    #[test]
    fn close_reasons_fit_a_close_frame() {
        for reason in CLOSE_REASONS {
            for lang in [Lang::Zh, Lang::En, Lang::Ja] {
                let text = reason.get(lang);
                assert!(text.len() <= 123, "{text} has {} bytes", text.len());
            }
        }
    }

    #[test]
    fn render_fills_placeholders() {
        let message = render(&FRAME_TOO_LARGE, Lang::En, &["70000", "65536"]);
        assert_eq!(
            message,
            "The message has 70000 bytes, over the limit of 65536 bytes; it was ignored"
        );
    }
}
