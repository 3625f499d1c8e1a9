"""Error messages of the bias-audit engine, kept as constants so callers and tests can match them.

Each is raised as ``ValueError(CONSTANT + details)``: the constant says what is wrong, the details say where.
"""

from __future__ import annotations

LENGTH_MISMATCH = "y_true, y_pred and sensitive_features must have the same number of samples"
EMPTY_INPUT = "no samples were given: y_true, y_pred and sensitive_features are empty"
NAN_LABELS = "labels contain missing values (NaN/None); drop or fill those samples first"
NAN_GROUPS = "sensitive features contain missing values; give those samples an explicit group"
UNKNOWN_POSITIVE_LABEL = "positive_label does not occur in y_true or y_pred"
NEED_POSITIVE_LABEL = (
    "labels are not {0, 1} or {-1, 1}: pass positive_label=<label> or average='macro' "
    "(one-vs-rest over classes)"
)
BOTH_POSITIVE_AND_AVERAGE = "pass either positive_label or average, not both"
EMPTY_GROUP = "a group has zero members"
BAD_N_BOOT = "n_boot must be a non-negative integer"
BAD_CI_LEVEL = "ci_level must be a number strictly between 0 and 1"
BAD_MIN_GROUP_SIZE = "min_group_size must be a positive integer"
BAD_AVERAGE = "average must be None or 'macro'"

# CSV upload of group tables.
CSV_EMPTY = "the CSV file has no data rows"
CSV_TOO_LARGE = "the CSV file is larger than the allowed maximum"
CSV_NOT_UTF8 = "the CSV file is not valid UTF-8 text; save it as UTF-8 and upload it again"
CSV_UNPARSABLE = "the file could not be parsed as CSV"
CSV_MISSING_COLUMNS = "the CSV file lacks required columns"
CSV_NO_GROUP_COLUMNS = "the CSV file has no group columns besides the id, text and label columns"
CSV_UNKNOWN_IDS = "the CSV file names sample ids that are not in the reference set"
CSV_DUPLICATE_IDS = "the CSV file lists a sample id more than once"
CSV_EMPTY_GROUP_VALUE = "some rows have an empty group value; every sample needs a group"
CSV_EMPTY_ID = "some rows have an empty sample id"
CSV_BAD_INPUT = "expected CSV content as bytes, a file path or a binary file object"

# Explanation disparity.
ATTR_SHAPE = "attributions must have shape [N, H, W] or [N, C, H, W]"
MASK_SHAPE = "the region mask must be a boolean [H, W] or [N, H, W] array matching the attributions"
from audit.regions import BAD_REGION  # noqa: E402  (one wording for every consumer of regions)
TOO_FEW_GROUPS = "the region-free comparison needs at least two groups with a usable map"
BAD_N_PERM = "n_perm must be a non-negative integer"
TOKEN_MASK_MISMATCH = "each text needs one identity-mask entry per attribution score"
GROUP_COUNT_MISMATCH = "one group label is needed per sample"

# Counterfactual text probe.
PROBA_SHAPE = "predict_proba must return an array of shape [n_texts, n_classes] (or [n_texts])"
NO_TEXTS = "texts is empty"
BAD_SWAPS = "swaps must be pairs of single words, e.g. [('he', 'she'), ('man', 'woman')]"
