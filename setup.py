"""yaypm: Yate external modules in Python, on Twisted Deferreds."""
from setuptools import find_packages, setup

# Folders outside the package that an installed yaypm needs (yaypm.resources finds them): a
# wheel carries each as yaypm/_data/<name>/, with these files (tests/test_packaging.py checks).
RESOURCES = {
    "yate_conf": ("yate-conf", ["**/*"]),
    "sipp": ("tests/sipp", ["**/*"]),
    "embedded": ("embedded", ["yaypmhost.cpp", "Makefile", "README.md"]),     # not build/
}

setup(
    name="yaypm",
    version="0.1.0",
    description="Write Yate external modules (IVR, routing, call control, DSM) with Twisted",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["yaypm", "yaypm.*"])
    + [f"yaypm._data.{name}" for name in RESOURCES],
    package_dir={f"yaypm._data.{name}": folder for name, (folder, _) in RESOURCES.items()},
    include_package_data=True,
    package_data={"yaypm": ["py.typed", "dsm/*.lark", "apps/*/*.sql", "apps/*/*.conf",
                            "apps/*/*.dsm", "apps/*/dsm/*.dsm", "apps/*/dsm/*.conf",
                            "prompts/*.au", "examples/*.dsm"],
                  **{f"yaypm._data.{name}": files for name, (_, files) in RESOURCES.items()}},
    install_requires=[
        "Twisted>=24.3",
        "lark>=1.1",
        "prometheus_client>=0.17",
    ],
    extras_require={
        "sql": ["PyMySQL>=1.0", "psycopg2-binary>=2.9"],
        "test": ["pytest>=8", "pytest-twisted>=1.14", "pytest-timeout>=2.2", "hypothesis>=6", "PyMySQL>=1.0",
                 "psycopg2-binary>=2.9"],
        "bench": ["python-yate"],
    },
    entry_points={
        "console_scripts": ["yaypm = yaypm.cli:main"],
        "pytest11": ["yaypm = yaypm.testing.plugin"],
    },
    classifiers=["Framework :: Twisted", "Topic :: Communications :: Telephony"],
)
