"""The Label Studio ML backend HTTP contract in Flask: /health, /setup, /predict, /webhook,
plus /metrics and /cad/<category>/<index>.png thumbnails for the CAD choice.

Why not the label-studio-ml package: its PyPI release (1.0.9) pins Flask 1.1.2 / Werkzeug 2.0.2,
which cannot be installed beside Open3D (Flask 3), and has the old API; the same contract is
implemented here, with the model shaped like a label-studio-ml model (setup / predict / fit).
"""
from __future__ import annotations

import functools
import hmac
import io
import logging
import time

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from label_sync.records import MalformedEvent, SyncRejected
from pose6d.cad_library import CadError, CadLibrary
from pose6d.errors import BadInput, StoreFailure
from pose6d.overlay import render_thumbnail

from ml_backend.metrics import Metrics
from ml_backend.model import Pose6DModel
from ml_backend.settings import Settings

log = logging.getLogger("ml_backend")
PUBLIC_PREFIXES = ("/health", "/cad/")
# Label Studio's bodies nest about 8 deep (a brush region's value in a result in an annotation).
MAX_JSON_DEPTH = 64  # docker health checks and <img> thumbnails carry no auth


class BadRequest(BadInput):
    """The request body is not what the contract says; answered with 400 and a JSON error."""


def create_app(settings: Settings, model: Pose6DModel | None = None) -> Flask:
    app = Flask("ml_backend")
    app.config["MAX_CONTENT_LENGTH"] = int(settings.max_request_mb * 1024 * 1024)
    model = model or Pose6DModel(settings)
    metrics = Metrics()
    app.extensions["pose6d_model"] = model

    @app.before_request
    def _auth_and_clock():
        g.t0 = time.perf_counter()
        if settings.basic_auth and not request.path.startswith(PUBLIC_PREFIXES):
            auth = request.authorization
            ok = auth is not None and auth.type == "basic" and _same(auth.username, settings.basic_auth_user) \
                & _same(auth.password, settings.basic_auth_password)
            if not ok:
                return Response('{"error": "authentication required"}', 401, mimetype="application/json",
                                headers={"WWW-Authenticate": 'Basic realm="pose6d"'})
        return None

    @app.after_request
    def _cors_and_metrics(response: Response):
        response.headers.setdefault("Access-Control-Allow-Origin", "*")
        route = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.observe(route, response.status_code, time.perf_counter() - g.get("t0", time.perf_counter()))
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        return jsonify(error=exc.description or exc.name), exc.code

    @app.errorhandler(BadRequest)
    def _bad_request(exc: BadRequest):
        log.warning("%s %s: bad request: %s", request.method, request.path, exc)
        return jsonify(error=str(exc)), 400

    @app.errorhandler(StoreFailure)
    def _store_down(exc: StoreFailure):
        log.error("%s %s: %s", request.method, request.path, exc)
        return jsonify(error="the sync store is unavailable; try again later"), 503

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("%s %s failed", request.method, request.path)
        return jsonify(error=f"internal error: {type(exc).__name__}"), 500

    @app.get("/health")
    @app.get("/")
    def health():
        # prefill_fit: setup_project --prefill-fit warns when the poses shown would not be fitted
        return jsonify(status="UP", model_class=type(model).__name__,
                       model_version=model.model_version,
                       prefill_fit=bool(model.settings.prefill_fit))

    @app.post("/setup")
    def setup():
        body = _json_body()
        schema = body.get("schema")
        if schema:
            if not isinstance(schema, str):
                raise BadRequest("'schema' must be the labeling config XML string")
            missing = model.check_config(schema)
            if missing:
                raise BadRequest("the labeling config lacks what this backend needs: " + ", ".join(missing))
        return jsonify(model_version=model.model_version)

    @app.post("/predict")
    def predict():
        body = _json_body()
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks or not all(isinstance(t, dict) for t in tasks):
            raise BadRequest("'tasks' must be a non-empty list of task objects")
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise BadRequest("'params' must be an object")
        context = params.get("context")
        if context is not None and not isinstance(context, dict):
            raise BadRequest("'params.context' must be an object or null")
        label_config = body.get("label_config")
        results = model.predict(tasks, context=context,
                                label_config=label_config if isinstance(label_config, str) else None)
        return jsonify(results=results, model_version=model.model_version)

    @app.post("/webhook")
    def webhook():
        body = _json_body()
        action = body.get("action")
        if not isinstance(action, str):
            raise BadRequest("webhook body has no 'action'")
        try:
            summary = model.fit(action, body)
        except MalformedEvent as exc:
            raise BadRequest(str(exc)) from None
        except SyncRejected as exc:
            return jsonify(status="rejected", error=str(exc)), 422
        if summary.get("status") == "failed":  # journaled: retried later, or repaired by reconcile
            return jsonify(summary), 503
        return jsonify(summary), 201

    @app.get("/metrics")
    def metrics_text():
        extra = {}
        if model._sync is not None:
            extra = {f"sync_events_{k}": v for k, v in model.sync.stats().items()
                     if isinstance(v, (int, float))}
        return Response(metrics.render(extra), mimetype="text/plain; version=0.0.4")

    @app.get("/cad/<category>/<int:index>.png")
    def cad_thumbnail(category: str, index: int):
        try:
            png = _thumbnail_png(model, category, index)
        except (CadError, OSError):  # public: the message names no server path
            log.info("no CAD thumbnail for %r %s", category[:80], index)
            return jsonify(error=f"no CAD model {index} of category {category[:80]!r}"), 404
        return Response(png, mimetype="image/png", headers={"Cache-Control": "public, max-age=3600"})

    return app


def _same(given: str | None, expected: str) -> bool:
    """Constant-time comparison of credentials."""
    return hmac.compare_digest((given or "").encode(), expected.encode())


def _json_body() -> dict:
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and limit and len(request.get_data(cache=True)) >= limit:
        # A streamed (chunked) body: Werkzeug stops reading at the limit instead of refusing it.
        raise RequestEntityTooLarge()
    try:
        body = request.get_json(silent=True, force=True)
    except RecursionError:  # JSON nested deeper than the parser's recursion limit
        raise BadRequest("the request body is nested too deeply") from None
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    if _depth_over(body, MAX_JSON_DEPTH):  # later recursion (journal, hashing) would fail on it
        raise BadRequest(f"the request body is nested deeper than {MAX_JSON_DEPTH} levels")
    return body


def _depth_over(value, limit: int) -> bool:
    """True if ``value`` nests lists / objects more than ``limit`` deep (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return False


@functools.lru_cache(maxsize=1024)
def _thumbnail_png_cached(root: str, category: str, index: int, mtime: float) -> bytes:
    from PIL import Image

    image = render_thumbnail(CadLibrary(root).mesh(category, index), size=120)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _thumbnail_png(model: Pose6DModel, category: str, index: int) -> bytes:
    path = model.cad.path(category, index)
    return _thumbnail_png_cached(str(model.cad.root), category, index, path.stat().st_mtime)
