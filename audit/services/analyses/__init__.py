"""One package per analysis kind. Each package registers one ``Analysis`` (``registry``): its use cases and
specs, its job kinds, its full-audit step, its report sections and its CLI commands. Adding a package here
adds an analysis everywhere those are listed."""
