"""HTTP: the Falcon apps of a node and every route they serve.

``app`` builds the apps from the node (``create_apps``: which app serves which port);
each other module holds the resources of one area: the WuKongIM-compatible API
(``users``, ``channels``, ``messages``, ``conversations``, ``connections``), the
cluster admin calls (``cluster_admin``, ``health``), the web manager (``manager_ui``,
``node_stats``), the demo chat (``demo``), and shared pieces (``auth``, ``errors``,
``validate``, ``openapi``, ``static_page``).
"""
