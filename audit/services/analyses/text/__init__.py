"""Token attributions of text models, stored like image maps and reused; read by the Text page. The report's
token attributions are gathered by the explanations section."""

from audit.services.analyses.registry import Analysis, register_analysis

ANALYSIS = register_analysis(Analysis(name="text", label="Token attributions", order=15), module=__name__)
