"""Engine errors to HTTP statuses, in one place; error pages in the site's style (JSON under /api/)."""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from engine.errors import (
    Conflict,
    DeploymentError,
    EngineError,
    FormValidationError,
    InvalidState,
    NotFound,
    PermissionDenied,
    RateLimited,
)

STATUS = [
    (FormValidationError, 400), (DeploymentError, 400), (PermissionDenied, 403), (NotFound, 404),
    (Conflict, 409), (InvalidState, 409), (RateLimited, 429), (EngineError, 400),
]
TITLES = {
    400: "请求有误", 401: "需要登录", 403: "无权访问", 404: "未找到", 405: "方法不允许", 409: "冲突",
    413: "文件过大", 429: "请求过于频繁", 500: "服务器错误",
}


def status_of(err: EngineError) -> int:
    """Return the HTTP status of an engine error."""
    return next(code for cls, code in STATUS if isinstance(err, cls))


def render_error(code: int, message: str, details: dict | None = None):
    """Render an error as a page, or as JSON under /api/."""
    if request.path.startswith("/api/"):
        body = {"error": message, "status": code}
        if details:
            body["details"] = details
        return jsonify(body), code
    return render_template("error.html", code=code, title=_(TITLES.get(code, "错误")), message=message,
                           details=details), code


def init_app(app: Flask) -> None:
    """Register the handlers."""

    @app.errorhandler(EngineError)
    def _engine(err: EngineError):
        details = getattr(err, "errors", None) or (
            {"problems": err.problems} if isinstance(err, DeploymentError) else None)
        return render_error(status_of(err), str(err), details)

    @app.errorhandler(CSRFError)
    def _csrf(err: CSRFError):
        return render_error(400, _("表单已过期或缺少安全令牌（CSRF），请刷新页面后重试。"))

    @app.errorhandler(HTTPException)
    def _http(err: HTTPException):
        return render_error(err.code or 500, _(TITLES.get(err.code or 500, "错误")))

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        app.logger.exception("unhandled error")
        return render_error(500, _("服务器内部错误，已记录。"))
