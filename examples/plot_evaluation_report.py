"""
# Reading a model's quality: label names, the report and its figures

A multi-label model is read from pictures more than from tables. This example fits a cheap
model on the bundled GoEmotions sample (word TF-IDF and a logistic regression per label,
inside `TunedThresholds` with per-label thresholds for macro-F1), turns its predictions into
label names, and draws what `skstack evaluate --html` puts on its page. It runs in seconds;
swap in `quickstart_pipeline()` for the stacked method.
"""

# %%
# Fit a decision rule around a simple classifier. `TunedThresholds` wraps any multi-label
# classifier; a DataFrame `Y` gives the labels their names.
import matplotlib.pyplot as plt
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline

from skstack import (
    TunedThresholds,
    html_report,
    load_sample_emotions,
    multilabel_report,
    predict_label_lists,
)
from skstack.plotting import plot_label_cooccurrence, plot_per_label_f1, plot_precision_recall

X_train, Y_train, _ = load_sample_emotions("train", as_frame=True)
X_test, Y_test, labels = load_sample_emotions("test", as_frame=True)
model = make_pipeline(
    TfidfVectorizer(sublinear_tf=True, min_df=2),
    TunedThresholds(OneVsRestClassifier(LogisticRegression(C=10, max_iter=1000)),
                    objective="macro_f1", shrinkage=10, min_labels=1, cv=3, random_state=0),
).fit(X_train, Y_train)

# %%
# Label names in, label names out.
for text, names in zip(X_test[:3], predict_label_lists(model, X_test[:3]), strict=True):
    print(f"{names} <- {text}")

# %%
# The scores, per label and averaged.
rule = model[-1]
pred = model.predict(X_test)
report = multilabel_report(Y_test, pred, labels, rule.thresholds_, rule.objective)
print(f"macro-F1 {report.averages['macro']['f1']:.3f}, Jaccard {report.jaccard_accuracy:.3f}")

# %%
# F1 per label: rare labels are where a multi-label model struggles.
f1 = [report.per_label[name]["f1"] for name in labels]
plot_per_label_f1(f1, None, labels)
plt.show()

# %%
# Each label's precision/recall curve, with the threshold the rule chose as a dot.
proba = model.predict_proba(X_test)
plot_precision_recall(Y_test.to_numpy(), proba, labels, rule.thresholds_)
plt.show()

# %%
# Which labels the model predicts together, against which labels occur together.
fig, axes = plt.subplots(1, 2, figsize=(16, 7))
plot_label_cooccurrence(Y_test, labels, ax=axes[0]).set_title("gold")
plot_label_cooccurrence(pred, labels, ax=axes[1]).set_title("predicted")
plt.show()

# %%
# All of it on one self-contained page (what `skstack evaluate --html` writes).
page = html_report(Y_test, pred, proba, labels, rule.thresholds_, rule.objective,
                   texts=list(X_test))
print(f"{len(page) / 1e6:.1f} MB of HTML")
