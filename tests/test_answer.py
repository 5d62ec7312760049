"""The app's request cycle shortcuts (app/flask_app.py) change nothing a client sees:
the URL adapter kept per request line still follows the host, path and method, a URL
built once is the one Flask builds (per script root, arguments and their order), and a
body handed to the server as its list is the same body (none for HEAD)."""

from __future__ import annotations

from flask import Flask, url_for


def test_kept_url_adapters_follow_host_path_and_method(app: Flask) -> None:
    app.add_url_rule("/t/where", "where", lambda: url_for("where", _external=True))
    client = app.test_client()
    for _ in range(2):  # the second round is answered from the kept adapters
        assert client.get("/t/where", base_url="http://a.test").text == "http://a.test/t/where"
        assert client.get("/t/where", base_url="http://b.test").text == "http://b.test/t/where"
        assert client.get("/t/where?x=1", base_url="https://b.test").text == (
            "https://b.test/t/where"
        )
        assert client.get("/t/nowhere").status_code == 404
        assert client.post("/t/where").status_code == 405


def test_urls_built_once_are_the_ones_flask_builds(app: Flask) -> None:
    from flask import Flask as Plain

    def links() -> str:
        asked = [
            ("portal.keys", {}),
            ("portal.keys", {"show": "live"}),
            ("portal.keys", {"q": "a b&c", "page": 2}),
            ("portal.keys", {"page": 2, "q": "a b&c"}),  # the same arguments, in another order
            ("portal.keys", {"page": True}),  # not a plain value: Flask's way
            ("static", {"filename": "css/app.css"}),
            ("portal.key_detail", {"public_id": "abc"}),
        ]
        built = [url_for(endpoint, **values) for endpoint, values in asked]
        flasks = [Plain.url_for(app, endpoint, **values) for endpoint, values in asked]
        assert built == flasks
        anchored = url_for("portal.keys", _anchor="top")
        assert anchored == Plain.url_for(app, "portal.keys", _anchor="top")
        return " ".join([*built, anchored])

    app.add_url_rule("/t/links", "links", links)
    client = app.test_client()
    for _ in range(2):  # the second round is answered from the URLs built once
        plain = client.get("/t/links").text
        assert plain.startswith("/keys /keys?show=live /keys?q=a+b%26c&page=2 /keys?page=2&q=")
        mounted = client.get("/t/links", environ_overrides={"SCRIPT_NAME": "/kl"}).text
        assert mounted.split() == [f"/kl{url}" for url in plain.split()]


def test_a_body_of_one_bytes_string_is_passed_as_it_is(app: Flask) -> None:
    client = app.test_client()
    refused = client.post("/api/v1/keys/validate", json={"key": "nope"})
    assert refused.status_code == 401 and refused.json["valid"] is False
    assert int(refused.headers["Content-Length"]) == len(refused.data)
    page = client.get("/login")
    head = client.head("/login")
    assert page.status_code == head.status_code == 200 and page.data and head.data == b""
