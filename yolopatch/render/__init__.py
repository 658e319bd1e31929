"""Rich renderables and lines for the CLI. Pure: data in, renderable out, nothing printed here."""
