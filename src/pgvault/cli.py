"""The ``pgvault`` command."""

from __future__ import annotations

import typer

app = typer.Typer(help="pgvault: data protection for PostgreSQL fleets.", no_args_is_help=True)


@app.callback()
def main() -> None:
    """pgvault's commands."""


@app.command()
def serve() -> None:
    """Run the API and the worker pool on the embedded defaults (PGVAULT_* variables override them)."""
    import uvicorn

    from .app import create_app
    from .settings import Settings

    settings = Settings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    app()
