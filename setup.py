"""The app's folder ``dashboard/`` installs as the package ``serieslabeler_app`` beside the library."""
from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["serieslabeler", "serieslabeler.*"]), "serieslabeler_app"],
    package_dir={"serieslabeler_app": "dashboard"},
)
