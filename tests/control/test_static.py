"""Static files are served by the app itself (daphne serves none), never from a CDN."""

import pytest

pytestmark = pytest.mark.django_db


def test_the_stylesheet_is_served(client):
    response = client.get("/static/css/app.css")
    assert response.status_code == 200
    assert b".agent-card" in b"".join(response.streaming_content)


def test_the_page_loads_its_libraries_from_our_own_static_files(operator_client):
    page = operator_client.get("/").content.decode()
    for asset in (
        "vendor/htmx/htmx-2.0.11.min.js",
        "vendor/htmx/ext-ws-2.0.4.min.js",
        "vendor/bootstrap/bootstrap-5.3.9.min.css",
        "vendor/bootstrap/bootstrap-5.3.9.bundle.min.js",
        "vendor/bootstrap-icons/bootstrap-icons-1.13.2.min.css",
    ):
        assert f"/static/{asset}" in page
        assert operator_client.get(f"/static/{asset}").status_code == 200
    assert "cdn" not in page.lower() and "https://" not in page
    font = "/static/vendor/bootstrap-icons/fonts/bootstrap-icons.woff2"
    assert operator_client.get(font).status_code == 200


def test_the_api_docs_load_swagger_from_our_own_static_files(operator_client):
    page = operator_client.get("/api/docs").content.decode()
    assert "/static/ninja/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()
    assert operator_client.get("/static/ninja/swagger-ui-bundle.js").status_code == 200
