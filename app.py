"""Streamlit entry point, served on this machine only and without the file watcher:

    streamlit run app.py --server.address 127.0.0.1 --server.fileWatcherType none
        --browser.gatherUsageStats false -- --runs-dir DIR [--allow-any-dir]

A router over the page modules in workbench/app/pages; the app only reads the run store. Its "Runs
directory" box opens DIR and its subdirectories only, unless started with --allow-any-dir.
"""

from workbench.app.main import main

main()
